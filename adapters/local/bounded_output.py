"""The one bounded reader of command output, for commands run here or on other hosts.

A command's output is read in blocks as it comes and only its last `LIMIT` bytes are kept (what
error messages and parsers use is the end of the output anyway), with a line saying how much was
dropped: a build log, a task printing in a loop or a runaway `rpc` cannot take the deployer's
memory with it. `ssh_output.run_bounded` drains remote streams into the same `Tail`.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

LIMIT = 64 * 1024  # bytes kept of each stream
BLOCK = 16 * 1024


class Tail:
    """The last `limit` bytes written to it, in blocks, and how many were dropped before."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit, self.kept, self.dropped = limit, 0, 0
        self._blocks: deque[bytes] = deque()

    def write(self, block: bytes) -> None:
        self._blocks.append(block)
        self.kept += len(block)
        while self.kept > self.limit:
            first = self._blocks.popleft()
            excess = self.kept - self.limit
            if len(first) > excess:  # keep the end of the block that crosses the limit
                self._blocks.appendleft(first[excess:])
                first = first[:excess]
            self.kept -= len(first)
            self.dropped += len(first)

    def text(self) -> str:
        kept = b"".join(self._blocks).decode(errors="replace")
        return f"[{self.dropped} {_DROPPED}]\n{kept}" if self.dropped else kept


_DROPPED = "earlier bytes of output dropped"


def was_cut(text: str) -> bool:
    """Whether `text` is a tail that `Tail` kept: its beginning dropped, as its first line says."""
    first = text.partition("\n")[0]
    return first.startswith("[") and first.endswith(f" {_DROPPED}]")


class AsyncStream(Protocol):
    """What asyncio's and asyncssh's readers have in common."""

    async def read(self, n: int = -1) -> bytes: ...


async def drain(stream: AsyncStream, into: Tail) -> None:
    """Read `stream` to its end, keeping its tail."""
    while block := await stream.read(BLOCK):
        into.write(block)


def run_local(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    limit: int = LIMIT,
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(argv, capture_output=True, text=True)`, keeping the tails of its output;
    past `timeout` the command is killed and `subprocess.TimeoutExpired` raised, as there."""
    out, err = Tail(limit), Tail(limit)
    with subprocess.Popen(
        list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            _read_to_end({process.stdout: out, process.stderr: err}, deadline)
        except subprocess.TimeoutExpired:
            process.kill()
            raise subprocess.TimeoutExpired(list(argv), timeout or 0) from None
        returncode = process.wait()
    return subprocess.CompletedProcess(list(argv), returncode, out.text(), err.text())


def _read_to_end(tails: dict[IO[bytes], Tail], deadline: float | None) -> None:
    """Read every pipe until all are closed, each block into its pipe's tail."""
    with selectors.DefaultSelector() as selector:
        for pipe, tail in tails.items():
            selector.register(pipe, selectors.EVENT_READ, tail)
        while selector.get_map():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("", 0)
            for key, _ in selector.select(left):
                if block := os.read(key.fd, BLOCK):
                    key.data.write(block)
                else:
                    selector.unregister(key.fileobj)
