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
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.deployment import (
    CLEANED,
    CLEANUP_FAILED,
    TASK_FAILED,
    TASK_OK,
    Deployment,
)
from edeliver.core.domain.errors import EdeliverError, NodeError, NodeUnreachable, RefusedError
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
from edeliver.core.ports import CommandHost, CommandResult, NodeShell
from edeliver.core.usecases.elixir_tasks import run_modules, vm_for
from edeliver.core.usecases.loaded_task import LoadedTask
from edeliver.core.usecases.task_context import TaskBody, TaskCommandFailed, TaskContext
from edeliver.core.usecases.task_threads import TaskThreads

__all__ = [
    "STATUS_PREFIX",
    "LoadedTask",
    "TaskBody",
    "TaskCommandFailed",
    "TaskContext",
    "TaskFailed",
    "TaskRunner",
    "interpreter",
    "legacy_build_env",
    "run_build_stage",
    "status_lines",
]

# What a VM of Elixir tasks may take to start, besides its tasks' own time limits.
VM_START_SECONDS = 60.0
# How edeliver 1.x's `status` function printed (and legacy hooks still print) a line.
STATUS_PREFIX = "-----> "


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
    threads: TaskThreads = field(init=False)

    def __post_init__(self) -> None:
        by_name = {t.name: t for t in self.tasks}
        self.tasks = [by_name[spec.name] for spec in ordered(t.spec for t in self.tasks)]
        d = self.deployment
        self.threads = TaskThreads(d.policy.max_parallel or len(d.order))

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
        if task is None or not _has_cleanup(task):
            return
        context = self._context(task, task.spec.stage, node, self._host(task, shell))
        ok, said = await self._limited(lambda: self._undo(task, context), context)
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
        ok, said = await self._limited(lambda: self._execute(task, context, shell), context)
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
                ran = await self._in_vm(due, "run", context)
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
            raise NodeError(f"{where}: task {task.name} failed at {stage}: {_last_lines(said)}")
        if ok and node is not None:
            self._assigns[node] = context.assigns

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

    def _kept(self, said: str, context: TaskContext) -> str:
        """What is kept of a run's output (in its event, in a failure's reason): no value of a
        secret of the deployer's environment or of the task's own."""
        return self.redact.including(context.env)(said)

    async def _execute(
        self, task: LoadedTask, context: TaskContext, shell: NodeShell | None
    ) -> tuple[bool, str]:
        if task.run is not None:
            return await _call(task.run, context, self.threads)
        if task.script is not None:
            return _ended(await context._host.run_command(task.script, context.env))
        if task.elixir is not None and shell is not None:
            return _ended(await shell.eval_elixir(self.artifact, task.elixir, context.env))
        if task.module is not None:
            return (await self._in_vm([task], "run", context))[0]
        return False, f"{task.spec.source}: an Elixir task runs on a node (where: node | once)"

    async def _undo(self, task: LoadedTask, context: TaskContext) -> tuple[bool, str]:
        if task.module is not None:
            return (await self._in_vm([task], "cleanup", context))[0]
        assert task.cleanup is not None  # _has_cleanup
        return await _call(task.cleanup, context, self.threads)

    async def _in_vm(
        self, tasks: Sequence[LoadedTask], phase: str, context: TaskContext
    ) -> list[tuple[bool, str]]:
        """Elixir tasks, by the VM their `where` and stage call for (usecases/elixir_tasks.py)."""
        route = self.deployment.route_of(context.node.name) if context.node else None
        how = vm_for(tasks[0].spec.where, context.stage, route is not None and route.hot)
        modules = [(t.module, t.name, t.spec.critical) for t in tasks if t.module is not None]
        return await run_modules(modules, phase, context, how, self.timeout)

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
            env=self._env(stage, task, node),
            _host=host,
            _loop=asyncio.get_running_loop(),
        )

    def _env(self, stage: str, task: LoadedTask, node: str | None) -> dict[str, str]:
        """What a task's commands see: edeliver 1.x's variables for the node (or every node)."""
        d = self.deployment
        targets = [self.nodes[n] for n in ([node] if node else d.order)]
        return {
            **self.env,
            "APP": d.app,
            "VERSION": d.release,
            "ENVIRONMENT": d.environment,
            "STAGE": stage,
            "TASK": task.name,
            "NODE": node or "",
            "HOSTS": " ".join(t.host for t in targets),
            "APP_USER": targets[0].user or "" if targets else "",
            "DELIVER_TO": _deliver_to(targets[0].path, d.app) if targets else "",
            "DEPLOY_PATH": targets[0].path if targets else "",
            "FIRST_DEPLOY": "true" if node and d.previous.get(node) is None else "false",
            "EDELIVER_SSH_TARGETS": "\n".join(_ssh_target(t) for t in targets),
        }


class TaskFailed(EdeliverError):
    """A critical task failed outside any node's flow (in a build); the message has its output."""


async def run_build_stage(
    tasks: Sequence[LoadedTask],
    stage: str,
    app: str,
    build_host: CommandHost,
    local: CommandHost,
    env: Mapping[str, str],
    show: Callable[[str], None] = lambda _: None,
    redact: Redactor | None = None,
    mix_host: CommandHost | None = None,
) -> None:
    """Run a build stage's tasks in order on the build host (`local` ones here); optional tasks
    are skipped (builds take no tag selection). TaskFailed when a critical one fails, with its
    output's tail `redact`ed of secrets. `show` gets the `status` lines of legacy hooks, as
    edeliver 1.x printed them. `mix_host`: where the built project's Mix runs the Elixir
    `where: build` tasks, when not on the build host (a container build's image)."""
    hide = (redact or Redactor()).including(env)
    for spec in ordered(t.spec for t in tasks):
        task = next(t for t in tasks if t.name == spec.name)
        if spec.stage != stage or spec.optional:
            continue
        host = local if spec.where == "local" else build_host
        if task.module is not None and spec.where == "build":
            host = mix_host or build_host
        context = TaskContext(
            app=app, release="", environment="", stage=stage, node=None, first_deploy=False,
            assigns={}, env={**env, "APP": app, "STAGE": stage, "TASK": spec.name},
            _host=host, _loop=asyncio.get_running_loop(),
        )  # fmt: skip
        if task.run is not None:
            ok, said = await _call(task.run, context, TaskThreads(1))
        elif task.module is not None:
            modules = [(task.module, spec.name, spec.critical)]
            how = vm_for(spec.where, stage, hot=False)
            ok, said = (await run_modules(modules, "run", context, how, None))[0]
        else:
            ok, said = _ended(await host.run_command(task.script or "", context.env))
        for line in status_lines(said):
            show(line)
        if not ok and spec.critical:
            raise TaskFailed(f"task {spec.name} failed at {stage}: {_last_lines(hide(said))}")


async def _call(body: TaskBody, context: TaskContext, threads: TaskThreads) -> tuple[bool, str]:
    """Run a Python task body in a task thread: (ok, what its commands said and any error)."""
    try:
        await threads.run(lambda: body(context))
    except asyncio.CancelledError:
        context.stop()
        raise
    except Exception as error:  # the user's code: any error fails the task, with its trace
        trace = "".join(traceback.format_exception_only(error)).strip()
        return False, "\n".join([*context._said, trace])
    return True, "\n".join(context._said)


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


def _has_cleanup(task: LoadedTask) -> bool:
    return task.cleanup is not None or (task.module is not None and task.module.has_cleanup)


def interpreter(script: str) -> list[str]:
    """The command line that runs a task script: its `#!` line's, else `sh`."""
    first = script.partition("\n")[0]
    return (first[2:].split() if first.startswith("#!") else []) or ["sh"]


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def status_lines(output: str) -> list[str]:
    """The lines a legacy hook's `status "..."` printed, which edeliver 1.x showed as they are."""
    return [line for line in output.splitlines() if line.startswith(STATUS_PREFIX)]


def legacy_build_env(build_host: NodeConfig, directory: str) -> dict[str, str]:
    """edeliver 1.x's variables for build hooks: the build host as HOSTS (so `__remote` and
    `__sync_remote` reach it), its user, and the build directory as BUILD_AT / DELIVER_TO."""
    return {
        "HOSTS": build_host.host,
        "APP_USER": build_host.user or "",
        "BUILD_HOST": build_host.host,
        "BUILD_USER": build_host.user or "",
        "BUILD_AT": directory,
        "DELIVER_TO": directory,
        "EDELIVER_SSH_TARGETS": _ssh_target(replace(build_host, path=directory)),
    }


def _ssh_target(node: NodeConfig) -> str:
    """One line per node for legacy hooks' `__remote`: port, user@host, identity, deploy path,
    split by the ASCII unit separator (a tab would let `read` merge an empty field)."""
    login = f"{node.user}@{node.host}" if node.user else node.host
    port = "" if node.port is None else str(node.port)  # unset: ssh's own config decides
    return "\x1f".join([port, login, node.identity_file or "", node.path])


def _deliver_to(path: str, app: str) -> str:
    """edeliver 1.x deployed into $DELIVER_TO/$APP: the parent of a path ending in the app."""
    head, _, tail = path.rstrip("/").rpartition("/")
    return (head or "/") if tail == app else path


def _ended(result: CommandResult) -> tuple[bool, str]:
    said = result.output.strip()
    return result.status == 0, said if result.status == 0 else f"{said}\n(exit {result.status})"


def _last_lines(output: str, lines: int = 5) -> str:
    return " | ".join(output.strip().splitlines()[-lines:]) or "no output"
