"""Runs `where = "local"` tasks' commands on this machine, from the project directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from pathlib import Path

from edeliver.adapters.local.bounded_output import Tail, drain
from edeliver.core.domain.tasks import interpreter
from edeliver.core.ports import CommandResult


class LocalCommandHost:
    """The deployer's own machine as a place to run task scripts."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def argv(self, script: str, env: Mapping[str, str]) -> list[str]:
        """The command that runs `script`: its interpreter, here."""
        return [*interpreter(script), "-c", script, "edeliver-task"]

    async def run_command(self, script: str, env: Mapping[str, str]) -> CommandResult:
        process = await asyncio.create_subprocess_exec(
            *self.argv(script, env),
            cwd=self.directory,
            env={**os.environ, **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that stopping it stops all
        )  # fmt: skip
        output = Tail()
        try:
            assert process.stdout is not None
            await drain(process.stdout, output)
            await process.wait()
        except asyncio.CancelledError:  # the step timed out or the user pressed Ctrl-C
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
            raise
        return CommandResult(process.returncode or 0, output.text())
