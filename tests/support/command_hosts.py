"""An in-memory CommandHost: this machine, for unit tests of `where = "local"` tasks, without
running `sh` (what a real shell does is tests/integration/test_local_task_processes.py's)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from edeliver.core.ports import CommandResult

Answer = Callable[[str, Mapping[str, str]], CommandResult]


def succeeds(_script: str, _env: Mapping[str, str]) -> CommandResult:
    return CommandResult(0, "")


@dataclass
class ScriptedCommandHost:
    """Notes each script with its environment and answers with `answer`; a script in `hanging`
    never ends by itself, only when cancelled (a time limit, Ctrl-C), which is noted too."""

    answer: Answer = succeeds
    hanging: Collection[str] = ()
    ran: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    async def run_command(self, script: str, env: Mapping[str, str]) -> CommandResult:
        self.ran.append((script, dict(env)))
        if script in self.hanging:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(script)
                raise
        return self.answer(script, env)

    @property
    def scripts(self) -> list[str]:
        return [script for script, _ in self.ran]
