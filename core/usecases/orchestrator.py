"""Drives a Deployment through the ports: the asyncio side of the core.

The rule (DESIGN §5): **event first, then act**. A node's entry into a state is stored before
the step of that state starts, and every step is idempotent (see `ports`). So after any
interruption `resume` re-runs the step of each node that was in flight, and that is safe
whether the step had happened, half happened or not happened at all.

Events are stored by a `Journal` (see `journal`) with group commit. When the event store fails
for good, each node ends the step it is in and starts nothing further (its next commit raises),
no rollback starts because of it, and `run` raises the store's error once every node stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.errors import EdeliverError, EventStoreError, NodeUnreachable
from edeliver.core.domain.lifecycle import (
    IN_FLIGHT,
    PENDING,
    ROLLING_BACK,
    STEP_OF_STATE,
    UPDATED,
    NodeState,
    Step,
    Trigger,
)
from edeliver.core.domain.model import Artifact, Route
from edeliver.core.domain.redaction import Redactor
from edeliver.core.domain.strategy import batch_size
from edeliver.core.ports import CommandHost, NodeShell, NodeShells
from edeliver.core.usecases.journal import Journal, Listener, SaveEvents
from edeliver.core.usecases.loaded_task import LoadedTask
from edeliver.core.usecases.task_runs import TaskRunner

T = TypeVar("T")
_MOST_BACKOFF = 4.0  # seconds between two tries to reach a node that a rollback waits for
__all__ = ["Journal", "Listener", "Orchestrator", "SaveEvents"]

# Each step as the NodeShell call that does it; a step may return the route it took.
STEP_CALLS: dict[Step, Callable[[NodeShell, Artifact], Awaitable[Route | None]]] = {
    Step.PREPARE: lambda shell, artifact: shell.prepare(artifact),
    Step.INSTALL: lambda shell, artifact: shell.install(artifact),
    Step.ACTIVATE: lambda shell, artifact: shell.activate(artifact),
    Step.VERIFY: lambda shell, artifact: shell.verify(artifact),
}


@dataclass
class Orchestrator:
    """Runs one deployment (or the rest of one) to the end."""

    deployment: Deployment
    artifact: Artifact
    nodes: Mapping[str, NodeConfig]
    shells: NodeShells
    journal: Journal
    step_timeout: float
    tasks: Sequence[LoadedTask] = ()
    local: CommandHost | None = None  # runs `where = "local"` tasks
    task_env: Mapping[str, str] = field(default_factory=dict)
    redact: Redactor = field(default_factory=Redactor)  # on output kept in failure reasons
    runner: TaskRunner = field(init=False)
    _open: dict[str, NodeShell] = field(default_factory=dict)
    _busy: set[str] = field(default_factory=set)
    _tasks: asyncio.TaskGroup | None = None
    _rollback_limit: asyncio.Semaphore = field(default_factory=asyncio.Semaphore)

    def __post_init__(self) -> None:
        self.runner = TaskRunner(
            self.tasks, self.deployment, self.nodes, self.artifact, self.local,
            self.journal.commit, self.task_env, self.redact, self.step_timeout,
        )  # fmt: skip

    async def run(self) -> None:
        """Drive every node until all are settled; rollbacks run beside the batches."""
        d = self.deployment
        self._rollback_limit = asyncio.Semaphore(batch_size(d.order, d.policy.max_parallel))
        try:
            async with asyncio.TaskGroup() as self._tasks:
                # Rollbacks cut short by an interruption start again; `_settle` starts the
                # ones it decides itself, so take the list before it runs.
                interrupted_rollbacks = d.nodes_in(ROLLING_BACK)
                d.decide_pending()
                await self._settle()
                for node in interrupted_rollbacks:
                    self._tasks.create_task(self._until_store_fails(self._roll_back(node)))
                for batch in d.batches:
                    if self.journal.failure:
                        break  # nothing further starts
                    async with asyncio.TaskGroup() as this_batch:
                        for node in batch:
                            this_batch.create_task(self._until_store_fails(self._drive(node)))
            if self.journal.failure:
                raise self.journal.failure
            if all(state == UPDATED for state in d.states.values()):
                await self.runner.after_rollout(self.shell)
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
        finally:
            await self.close()

    async def shell(self, node: str) -> NodeShell:
        """The node's connection, opened once and reused for every step; told the route the
        node took when one is recorded (a resumed run is a new process: its shells know none)."""
        if node not in self._open:
            shell = await self.shells.open(self.nodes[node])
            if (route := self.deployment.route_of(node)) is not None:
                shell.take_route(route)
            self._open[node] = shell
        return self._open[node]

    async def _until_store_fails(self, work: Coroutine[Any, Any, None]) -> None:
        """Run one node's work; a store failing for good ends it where it is, and the other
        nodes' tasks go on to the end of their current step (no task group cancels them)."""
        with contextlib.suppress(EventStoreError):
            await work

    async def _drive(self, node: str) -> None:
        d = self.deployment
        if d.states[node] == PENDING and node not in d.pending_actions:
            d.transition(node, Trigger.START)
        while True:
            await self._settle()
            state = d.states[node]
            if state not in IN_FLIGHT or node in d.pending_actions:
                return
            step = STEP_OF_STATE[NodeState(state)][0]
            self._busy.add(node)
            error, note = await self._run_step(node, step)
            self._busy.discard(node)
            if error is None:
                if isinstance(note, Route):  # stored with the step's end, before what follows
                    d.routed(node, note)
                d.step_ended(node, note.why if isinstance(note, Route) else note)
            else:
                d.fail(node, step, self.redact(error))

    async def _run_step(self, node: str, step: Step) -> tuple[str | None, str | Route]:
        """Run one step with the tasks of the stages around it; return why it failed (or None),
        and the note it gave for the record: a text, or the route the node takes (upgrade mode).
        The step and each task run have a step_timeout of their own (the runner keeps the
        tasks'), so a task cut short fails its node only if critical."""
        note: object = None
        try:
            shell = await self._within_step_timeout(self.shell(node))
            before, after = self.runner.stages_of_step(step)
            for stage in before:
                await self.runner.at_node_stage(stage, node, shell)
            note = await self._within_step_timeout(STEP_CALLS[step](shell, self.artifact))
            for stage in after:
                await self.runner.at_node_stage(stage, node, shell)
        except TimeoutError:
            return f"timed out after {self.step_timeout:g}s", ""
        except EventStoreError:
            raise  # the store failed, not the node: the node stops where it is
        except EdeliverError as error:
            return str(error), ""
        except Exception as error:  # an adapter's bug must fail the node, not the whole rollout
            return f"{type(error).__name__}: {error}", ""
        return None, note if isinstance(note, str | Route) else ""

    async def _within_step_timeout(self, work: Awaitable[T]) -> T:
        async with asyncio.timeout(self.step_timeout):
            return await work

    async def _settle(self) -> None:
        """Carry out due fallback actions, store every new event, then start due rollbacks."""
        rolling_back = self.deployment.carry_out_due_actions(self._busy)
        await self.journal.commit()
        assert self._tasks is not None
        for node in rolling_back:
            self._tasks.create_task(self._until_store_fails(self._roll_back(node)))

    async def _roll_back(self, node: str) -> None:
        """Roll the node back within the step timeout, waiting for it while it cannot be
        reached (rebooting, sshd restarting): its tasks' connections included."""
        d = self.deployment
        previous = d.rollback_target(node)
        unreachable: list[NodeUnreachable] = []
        async with self._rollback_limit:
            try:
                async with asyncio.timeout(self.step_timeout):
                    await until_reachable(lambda: self._rolling_back(node, previous), unreachable)
            except EventStoreError:
                raise  # the store failed, not the rollback: resume carries it on
            except Exception as error:
                detail = self._not_back(error, unreachable)
                d.transition(node, Trigger.ROLLBACK_FAILED, self.redact(detail))
            else:
                done = f"back on {previous}" if previous else "emptied"
                d.transition(node, Trigger.ROLLED_BACK, done)
        await self.journal.commit()

    async def _rolling_back(self, node: str, previous: str | None) -> None:
        shell = await self.shell(node)
        await self.runner.rolling_back(
            node, shell, lambda: shell.roll_back(self.artifact, previous)
        )

    def _not_back(self, error: Exception, unreachable: list[NodeUnreachable]) -> str:
        """One line saying why a rollback failed."""
        if not isinstance(error, TimeoutError):
            return str(error)
        if unreachable:
            last = str(unreachable[-1]).splitlines()[0]
            return f"could not be reached within the {self.step_timeout:g}s step timeout: {last}"
        return f"timed out after {self.step_timeout:g}s"

    async def close(self) -> None:
        """Close every connection and stop the journal's writer."""
        await asyncio.gather(*(s.close() for s in self._open.values()), return_exceptions=True)
        self._open.clear()
        self.journal.close()


async def until_reachable(
    attempt: Callable[[], Awaitable[None]], unreachable: list[NodeUnreachable]
) -> None:
    """Run `attempt` again, with backoff, while it meets a node that cannot be reached for the
    moment (each such error kept in `unreachable`); the caller's timeout ends the waiting."""
    for tries in itertools.count():
        try:
            return await attempt()
        except NodeUnreachable as error:
            if not error.passing:
                raise
            unreachable.append(error)
        await asyncio.sleep(min(0.25 * 2**tries, _MOST_BACKOFF))


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error inside (possibly nested) task groups."""
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first
