"""A build's long commands on this machine (`mix`, a container CLI), run on the event loop.

Their output is bounded as `run_local`'s is (the tails the error messages quote). A cancelled
build (SIGTERM, a caller's timeout) kills its command at once instead of waiting minutes for a
worker thread to come back; Ctrl-C reaches it directly, as it stays in the terminal's group.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from edeliver.adapters.local.bounded_output import Tail, drain


async def run_build_command(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`run_local(argv, cwd=cwd, env=env)` without blocking the event loop."""
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = Tail(), Tail()
    assert process.stdout is not None and process.stderr is not None
    try:
        await asyncio.gather(drain(process.stdout, out), drain(process.stderr, err))
        returncode = await process.wait()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    return subprocess.CompletedProcess(list(argv), returncode, out.text(), err.text())
