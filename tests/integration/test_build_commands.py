"""A build's long commands run on the event loop: their output bounded and kept apart, the
command killed when the build is cancelled rather than waited for."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edeliver.adapters.build.build_commands import run_build_command
from edeliver.adapters.local.bounded_output import LIMIT
from tests.support.waiting import process_ended, wait_for, wait_for_async


async def test_a_build_command_gives_its_status_and_each_stream_apart(tmp_path: Path) -> None:
    """stdout and stderr come back separately (the release's facts are read from stdout), in
    the given directory and environment, with the exit status."""
    script = 'echo "$PWD $PART"; echo failed >&2; exit 3'
    done = await run_build_command(["sh", "-c", script], cwd=tmp_path, env={"PART": "deps"})
    assert (done.returncode, done.stdout, done.stderr) == (3, f"{tmp_path} deps\n", "failed\n")


async def test_a_build_command_keeps_only_the_end_of_a_long_log() -> None:
    """A build printing megabytes keeps its last 64 KiB, with a line saying what was dropped."""
    printed = 4 * LIMIT
    done = await run_build_command(["sh", "-c", f"head -c {printed} /dev/zero | tr '\\0' x"])
    note, _, kept = done.stdout.partition("\n")
    assert note == f"[{printed - LIMIT} earlier bytes of output dropped]"
    assert kept == "x" * LIMIT


async def test_a_cancelled_build_kills_its_command_at_once(tmp_path: Path) -> None:
    """SIGTERM cancels the build: its command is killed, not waited for to its end."""
    pid_file = tmp_path / "pid"
    script = f"echo $$ > {pid_file}; exec sleep 600"
    build = asyncio.create_task(run_build_command(["sh", "-c", script]))

    async def started() -> bool:
        return pid_file.is_file() and pid_file.read_text().strip().isdigit()

    await wait_for_async(started, 10, "the command to start")
    pid = int(pid_file.read_text())
    build.cancel()
    done, _ = await asyncio.wait({build}, timeout=10)
    assert build in done and build.cancelled()
    wait_for(lambda: process_ended(pid), 10, f"the command (pid {pid}) to end")
