"""What a task receives (DESIGN §7): its context, akin to a Plug's conn, and its one way to
act, `ctx.run`, which hands each command to the event loop from the task's own thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import CancelledError as CommandCancelled
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from edeliver.core.domain.config import NodeConfig
from edeliver.core.ports import CommandHost, CommandResult

TaskBody = Callable[["TaskContext"], object]


class TaskCommandFailed(Exception):
    """A command a Python task ran with `ctx.run` exited non-zero."""


@dataclass
class TaskContext:
    """What a task receives, akin to a Plug's conn: return it, with `assigns` for later tasks."""

    app: str
    release: str
    environment: str
    stage: str
    node: NodeConfig | None  # None for a local task outside any node's flow
    first_deploy: bool
    assigns: dict[str, Any]
    env: dict[str, str]
    _host: CommandHost
    _loop: asyncio.AbstractEventLoop
    _said: list[str] = field(default_factory=list)
    _commands: set[Future[CommandResult]] = field(default_factory=set)
    _stopped: bool = False

    def run(self, command: str, *, check: bool = True) -> str:
        """Run a shell command where the task runs; its output (TaskCommandFailed on non-zero
        exit when `check`)."""
        if self._stopped:
            raise TaskCommandFailed(f"`{command}` not run: the step was stopped")
        coroutine = self._host.run_command(command, self.env)
        running = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        self._commands.add(running)
        try:
            result = running.result()
        except CommandCancelled:
            raise TaskCommandFailed(f"`{command}` stopped with its step") from None
        finally:
            self._commands.discard(running)
        self._said.append(result.output)
        if check and result.status != 0:
            raise TaskCommandFailed(f"`{command}` exited {result.status}")
        return result.output

    def assign(self, **values: Any) -> TaskContext:
        self.assigns.update(values)
        return self

    def stop(self) -> None:
        """The step was cut short: the task's running command stops (cancelling it stops its
        script on the node) and it may start no other. Its Python code runs on to its end: a
        thread cannot be stopped."""
        self._stopped = True
        for running in list(self._commands):
            running.cancel()
