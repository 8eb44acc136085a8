"""Remote commands whose output is kept bounded while it is read.

`asyncssh`'s `conn.run` gathers a command's whole stdout and stderr in memory: a task that
prints a log in a loop, or a runaway `rpc`, could take the deployer's memory with it. Here each
stream is read in blocks as it comes and only its last `LIMIT` bytes are kept (what the error
messages show is the end of the output anyway), with a line saying how much was dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path

import asyncssh

LIMIT = 64 * 1024  # bytes kept of each stream
_BLOCK = 16 * 1024
_SEND_BLOCK = 256 * 1024
Process = asyncssh.SSHClientProcess[bytes]
# Every script sent to a host, at DEBUG: `edeliver -vv` prints them, masked (cli/output.py).
SCRIPTS = logging.getLogger("edeliver.scripts")


def log_script(host: str, script: str) -> None:
    """Say which script goes to `host`; nothing is formatted unless someone listens."""
    if SCRIPTS.isEnabledFor(logging.DEBUG):
        SCRIPTS.debug("%s", script, extra={"node": host})


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
        return f"[{self.dropped} earlier bytes of output dropped]\n{kept}" if self.dropped else kept


async def run_bounded(
    conn: asyncssh.SSHClientConnection, command: str, script: str, limit: int = LIMIT
) -> asyncssh.SSHCompletedProcess:
    """Run `command` with `script` on its stdin; its exit status and the tails of its output."""
    # Not `async with`: a run cut short must leave the channel open, as `conn.run` does;
    # closing it would hang up on the script before the caller stops its process tree.
    process = await conn.create_process(command, encoding=None)
    process.stdin.write(script.encode())
    process.stdin.write_eof()
    return await _completed(process, command, limit)


async def run_streaming(
    conn: asyncssh.SSHClientConnection,
    command: str,
    script: str,
    data: Path,
    sent: Callable[[int], None],
    limit: int = LIMIT,
) -> asyncssh.SSHCompletedProcess:
    """Run `command` with, on its stdin, the length of `script` on a line, `script`, then the
    file `data`, sent as fast as the channel takes it (`sent` hears the bytes of it so far)."""
    process = await conn.create_process(command, encoding=None)
    body = script.encode()
    process.stdin.write(b"%d\n%s" % (len(body), body))
    completing = asyncio.ensure_future(_completed(process, command, limit))
    try:
        await _send(process, data, sent)
    except (BrokenPipeError, asyncssh.Error):
        pass  # the script stopped reading: its exit status says why
    except asyncio.CancelledError:
        # Cut short (the step's timeout): dropped, not closed politely, as an SFTP upload is
        # (sftp_upload): a node partitioned away would not answer for a keepalive's minute.
        # The node's script then reads the end of its input and removes what it wrote.
        completing.cancel()
        conn.abort()
        raise
    except BaseException:
        completing.cancel()
        raise
    return await completing


async def _send(process: Process, data: Path, sent: Callable[[int], None]) -> None:
    done = 0
    with data.open("rb") as source:
        while block := await asyncio.to_thread(source.read, _SEND_BLOCK):
            process.stdin.write(block)
            await process.stdin.drain()
            done += len(block)
            sent(done)
    process.stdin.write_eof()


async def _completed(process: Process, command: str, limit: int) -> asyncssh.SSHCompletedProcess:
    out, err = Tail(limit), Tail(limit)
    await asyncio.gather(_drain(process.stdout, out), _drain(process.stderr, err))
    await process.wait_closed()
    status = process.exit_status
    returncode = process.returncode
    return asyncssh.SSHCompletedProcess(
        process.env, command, None, status, process.exit_signal, returncode, out.text(), err.text()
    )


async def _drain(stream: asyncssh.SSHReader[bytes], into: Tail) -> None:
    while block := await stream.read(_BLOCK):
        into.write(block)
