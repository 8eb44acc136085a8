"""Running tasks during a rollout (DESIGN §7): around a node's steps, once around the rollout,
and around a node's fallback rollback with the cleanups of what ran on it.

Every run is recorded as a `TaskRan` event with the tail of its output, so a failure shows what
the task said, and `resume` never runs again a task that already ended on a node (a task whose
run was cut short by the interruption runs again: tasks, like steps, should be idempotent).

Every run is also recorded when it starts (`TaskStarted`), and runs under a time limit (the
environment's step_timeout): past it the run is cut short (its command killed with its process
tree, here or on the node) and ends `failed`, failing its node if critical.

A Python task's `run(ctx)` is the user's synchronous code: it runs in a thread of `TaskThreads`
(the tasks' own, apart from the journal's writer and the stores' threads), and `ctx.run(...)`
hands each command back to the event loop, which runs it over the node's one connection (or on
this machine for `where = "local"`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.deployment_reading import CLEANED, CLEANUP_FAILED, TASK_FAILED, TASK_OK
from edeliver.core.domain.errors import NodeError, NodeUnreachable, RefusedError
from edeliver.core.domain.model import Artifact
from edeliver.core.domain.redaction import Redactor
from edeliver.core.domain.tasks import (
    AFTER_ROLLOUT,
    BEFORE_ROLLOUT,
    POST_ROLLBACK,
    PRE_ROLLBACK,
    STEP_STAGES,
    Selection,
    ordered,
    skip_reason,
)
from edeliver.core.ports import CommandHost, NodeShell
from edeliver.core.usecases.loaded_task import LoadedTask
from edeliver.core.usecases.task_context import TaskContext
from edeliver.core.usecases.task_env import rollout_task_env
from edeliver.core.usecases.task_execution import TaskExecution, has_cleanup
from edeliver.core.usecases.task_outcomes import last_lines
from edeliver.core.usecases.task_threads import TaskThreads

# What a VM of Elixir tasks may take to start, besides its tasks' own time limits.
VM_START_SECONDS = 60.0


@dataclass
class TaskRunner:
    """Runs the selected tasks of a deployment at their stages and records each run."""

    tasks: Sequence[LoadedTask]
    deployment: Deployment
    nodes: Mapping[str, NodeConfig]
    artifact: Artifact
    local: CommandHost | None
    record: Callable[[], Awaitable[None]]  # stores the recorded events
    env: Mapping[str, str] = field(default_factory=dict)  # given to every task
    redact: Redactor = field(default_factory=Redactor)  # the deployer's secrets, for output
    timeout: float | None = None  # of each run: the environment's step_timeout
    _once: dict[str, asyncio.Lock] = field(default_factory=dict)
    _assigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    execution: TaskExecution = field(init=False)

    def __post_init__(self) -> None:
        by_name = {t.name: t for t in self.tasks}
        self.tasks = [by_name[spec.name] for spec in ordered(t.spec for t in self.tasks)]
        d = self.deployment
        threads = TaskThreads(d.policy.max_parallel or len(d.order))
        self.execution = TaskExecution(d, self.artifact, threads, self.timeout)

    @property
    def selection(self) -> Selection:
        chosen = self.deployment.selection
        return Selection(*(frozenset(chosen.get(k, ())) for k in ("include", "exclude", "only")))

    def stages_of_step(self, step: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The stages before the step and those after it, in the deployment's mode."""
        return STEP_STAGES.get(self.deployment.mode, {}).get(step, ((), ()))

    # -- a node's stages -----------------------------------------------------------------------

    async def at_node_stage(self, stage: str, node: str, shell: NodeShell) -> None:
        """Run the stage's tasks for a node; NodeError when a critical one fails."""
        due = list(self._due(stage, node))
        if not due:
            return
        try:
            for group in _in_one_vm(due):
                if len(group) > 1:
                    await self._run_together(group, stage, node, shell)
                elif group[0].spec.where == "once":
                    await self._once_for(group[0], stage, node, shell)
                else:
                    await self._run_recorded(group[0], stage, node, node, shell)
        finally:
            # One write for the stage: a run whose record an interruption loses runs again on
            # resume, as a run cut short does. Not while cancelled: the next write stores it.
            if not _cancelling():
                await self.record()

    async def rolling_back(
        self, node: str, shell: NodeShell, roll_back: Callable[[], Awaitable[None]]
    ) -> None:
        """pre_rollback tasks, then the cleanups of what ran on the node in reverse, the rollback
        itself, then post_rollback tasks. A failing task or cleanup is recorded, never stops it:
        getting the node back comes first. A node that cannot be reached for the moment is no
        failing task: NodeUnreachable (passing) goes to the caller, which waits for the node and
        runs this again (what already ended is not run twice)."""
        await self._rollback_stage(PRE_ROLLBACK, node, shell)
        for name in self.deployment.cleanups_due(node):
            await self._clean_up(name, node, shell)
        await self.record()
        await roll_back()
        await self._rollback_stage(POST_ROLLBACK, node, shell)

    async def _rollback_stage(self, stage: str, node: str, shell: NodeShell) -> None:
        """The stage's tasks; a failure is recorded and passed over, a passing unreachable not."""
        try:
            await self.at_node_stage(stage, node, shell)
        except NodeUnreachable as error:
            if error.passing:
                raise
        except NodeError:
            pass

    async def _once_for(self, task: LoadedTask, stage: str, node: str, shell: NodeShell) -> None:
        """The first node to reach the stage runs it; the others wait for it, and fail with it
        when it failed and is critical (they must not go on without it)."""
        async with self._once.setdefault(task.name, asyncio.Lock()):
            done = self.deployment.once_outcome(task.name)
            if done is None:
                await self._run_recorded(task, stage, node, node, shell)
                return
        ran_on, outcome = done
        if outcome == TASK_FAILED and task.spec.critical:
            raise NodeError(f"{node}: task {task.name} failed on {ran_on}; it runs once for all")

    async def _clean_up(self, name: str, node: str, shell: NodeShell) -> None:
        task = next((t for t in self.tasks if t.name == name), None)
        if task is None or not has_cleanup(task):
            return
        context = self._context(task, task.spec.stage, node, self._host(task, shell))
        ok, said = await self.execution.undo(task, context)
        said = self._kept(said, context)
        self.deployment.task_ran(
            node, task.spec.stage, name, CLEANED if ok else CLEANUP_FAILED,
            critical=False, output=said,
        )  # fmt: skip

    # -- around the rollout --------------------------------------------------------------------

    async def before_rollout(self, shells: Callable[[str], Awaitable[NodeShell]]) -> None:
        """pre_erlang_update; a critical failure refuses the deployment (nothing changed yet)."""
        try:
            for stage in BEFORE_ROLLOUT:
                await self._around_rollout(stage, shells)
        except NodeError as error:
            raise RefusedError(f"{error}; nothing was changed on any node") from error

    async def after_rollout(self, shells: Callable[[str], Awaitable[NodeShell]]) -> None:
        """post_erlang_deployed_update, post_erlang_update: once every node is updated."""
        with contextlib.suppress(NodeError):  # recorded; the outcome says it failed
            for stage in AFTER_ROLLOUT:
                await self._around_rollout(stage, shells)

    async def _around_rollout(
        self, stage: str, shells: Callable[[str], Awaitable[NodeShell]]
    ) -> None:
        order = self.deployment.order
        try:
            for task in self._due(stage, None):
                if task.spec.where == "local":
                    await self._run_recorded(task, stage, "", None, None)
                    continue
                for node in order[:1] if task.spec.where == "once" else order:
                    await self._run_recorded(task, stage, node, node, await shells(node))
        finally:
            if not _cancelling():
                await self.record()

    # -- one run -------------------------------------------------------------------------------

    def _due(self, stage: str, node: str | None) -> Iterator[LoadedTask]:
        first = node is not None and self.deployment.previous.get(node) is None
        for task in self.tasks:
            if task.spec.stage != stage:
                continue
            if skip_reason(task.spec, self.deployment.environment, self.selection, first) is None:
                yield task

    def _host(self, task: LoadedTask, shell: NodeShell | None) -> CommandHost:
        if shell is not None and task.spec.where != "local":
            return shell
        if self.local is None:  # a wiring mistake, not user input
            raise NodeError(f"task {task.name}: no way to run commands on this machine")
        return self.local

    async def _run_recorded(
        self, task: LoadedTask, stage: str, key: str, node: str | None, shell: NodeShell | None
    ) -> None:
        """Run a task unless it already ended under `key` (its node, or "" for this machine);
        record how it ended; NodeError when it failed and is critical."""
        if self.deployment.task_outcome(key, stage, task.name) in (TASK_OK, TASK_FAILED):
            return
        context = self._context(task, stage, node, self._host(task, shell))
        self.deployment.task_started(key, stage, task.name, self.timeout)
        await self.record()
        ok, said = await self.execution.run(task, context, shell)
        self._ended(task, stage, key, node, ok, said, context)

    async def _run_together(
        self, tasks: Sequence[LoadedTask], stage: str, node: str, shell: NodeShell
    ) -> None:
        """Elixir tasks of one stage of a node, in one VM: the first is recorded started before
        the VM starts, the others as the results say they ran (a critical failure ends them)."""
        due = [t for t in tasks if self.deployment.task_outcome(node, stage, t.name) is None]
        if not due:
            return
        context = self._context(due[0], stage, node, shell)
        self.deployment.task_started(node, stage, due[0].name, self.timeout)
        await self.record()
        limit = None if self.timeout is None else self.timeout * len(due) + VM_START_SECONDS
        try:
            async with asyncio.timeout(limit):
                ran = await self.execution.in_vm(due, "run", context)
        except TimeoutError:
            ran = [(False, f"timed out after {limit:g}s and was stopped")]
        for index, (task, (ok, said)) in enumerate(zip(due, ran, strict=False)):
            if index:
                self.deployment.task_started(node, stage, task.name, self.timeout)
            self._ended(task, stage, node, node, ok, said, context)

    def _ended(
        self, task: LoadedTask, stage: str, key: str, node: str | None, ok: bool, said: str,
        context: TaskContext,
    ) -> None:  # fmt: skip
        """Record how a run ended; NodeError when it failed and is critical."""
        said = self._kept(said, context)
        self.deployment.task_ran(
            key, stage, task.name, TASK_OK if ok else TASK_FAILED,
            critical=task.spec.critical, output=said,
        )  # fmt: skip
        if not ok and task.spec.critical:
            where = node or "this machine"
            raise NodeError(f"{where}: task {task.name} failed at {stage}: {last_lines(said)}")
        if ok and node is not None:
            self._assigns[node] = context.assigns

    def _kept(self, said: str, context: TaskContext) -> str:
        """What is kept of a run's output (in its event, in a failure's reason): no value of a
        secret of the deployer's environment or of the task's own."""
        return self.redact.including(context.env)(said)

    def _context(
        self, task: LoadedTask, stage: str, node: str | None, host: CommandHost
    ) -> TaskContext:
        config = self.nodes.get(node) if node else None
        return TaskContext(
            app=self.deployment.app,
            release=self.deployment.release,
            environment=self.deployment.environment,
            stage=stage,
            node=config,
            first_deploy=node is not None and self.deployment.previous.get(node) is None,
            assigns=dict(self._assigns.get(node or "", {})),
            env=rollout_task_env(self.deployment, self.nodes, stage, task.name, node, self.env),
            _host=host,
            _loop=asyncio.get_running_loop(),
        )


def _in_one_vm(due: Sequence[LoadedTask]) -> list[list[LoadedTask]]:
    """Runs of neighbouring Elixir module tasks of each node share a VM; others run alone."""
    groups: list[list[LoadedTask]] = []
    for task in due:
        together = task.module is not None and task.spec.where == "node"
        if together and groups and groups[-1][-1].module and groups[-1][-1].spec.where == "node":
            groups[-1].append(task)
        else:
            groups.append([task])
    return groups


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
