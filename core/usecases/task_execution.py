"""One task of a rollout run, whatever it is (a Python body, a script, Elixir code or modules),
under the run's time limit: past it the run is cut short (its command killed with its process
tree, here or on the node) and ends failed, with what it said until then."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.model import Artifact
from edeliver.core.ports import NodeShell
from edeliver.core.usecases.elixir_tasks import run_modules, vm_for
from edeliver.core.usecases.loaded_task import LoadedTask
from edeliver.core.usecases.task_context import TaskContext
from edeliver.core.usecases.task_outcomes import call_body, command_outcome
from edeliver.core.usecases.task_threads import TaskThreads


@dataclass(frozen=True)
class TaskExecution:
    """Runs a deployment's tasks and their cleanups, each under `timeout`; (ok, what it said)."""

    deployment: Deployment
    artifact: Artifact
    threads: TaskThreads  # Python bodies' own threads
    timeout: float | None  # of each run: the environment's step_timeout

    async def run(
        self, task: LoadedTask, context: TaskContext, shell: NodeShell | None
    ) -> tuple[bool, str]:
        return await self._limited(lambda: self._execute(task, context, shell), context)

    async def undo(self, task: LoadedTask, context: TaskContext) -> tuple[bool, str]:
        """The task's cleanup (`has_cleanup` says it has one)."""
        return await self._limited(lambda: self._undo(task, context), context)

    async def _limited(
        self, execute: Callable[[], Awaitable[tuple[bool, str]]], context: TaskContext
    ) -> tuple[bool, str]:
        """Run under the time limit; past it the run is cut short and ends failed, with what it
        said until then. (A rollback's timeout ending first cancels it like Ctrl-C does.)"""
        try:
            async with asyncio.timeout(self.timeout):
                return await execute()
        except TimeoutError:
            stopped = f"timed out after {self.timeout:g}s and was stopped"
            return False, "\n".join([*context._said, stopped])

    async def _execute(
        self, task: LoadedTask, context: TaskContext, shell: NodeShell | None
    ) -> tuple[bool, str]:
        if task.run is not None:
            return await call_body(task.run, context, self.threads)
        if task.script is not None:
            return command_outcome(await context._host.run_command(task.script, context.env))
        if task.elixir is not None and shell is not None:
            return command_outcome(await shell.eval_elixir(self.artifact, task.elixir, context.env))
        if task.module is not None:
            return (await self.in_vm([task], "run", context))[0]
        return False, f"{task.spec.source}: an Elixir task runs on a node (where: node | once)"

    async def _undo(self, task: LoadedTask, context: TaskContext) -> tuple[bool, str]:
        if task.module is not None:
            return (await self.in_vm([task], "cleanup", context))[0]
        assert task.cleanup is not None  # has_cleanup
        return await call_body(task.cleanup, context, self.threads)

    async def in_vm(
        self, tasks: Sequence[LoadedTask], phase: str, context: TaskContext
    ) -> list[tuple[bool, str]]:
        """Elixir tasks, by the VM their `where` and stage call for (usecases/elixir_tasks.py)."""
        route = self.deployment.route_of(context.node.name) if context.node else None
        how = vm_for(tasks[0].spec.where, context.stage, route is not None and route.hot)
        modules = [(t.module, t.name, t.spec.critical) for t in tasks if t.module is not None]
        return await run_modules(modules, phase, context, how, self.timeout)


def has_cleanup(task: LoadedTask) -> bool:
    return task.cleanup is not None or (task.module is not None and task.module.has_cleanup)
