"""Day-2 operations on an environment's running release: start, stop, restart (DESIGN §5).

An Operation is an aggregate of its own, stored beside the deployments: who did what to which
nodes, and how each node answered. It takes the environment's lock (a deployment in progress
refuses it, and it refuses a deployment) and each node's lock for as long as it acts, and works
through the nodes in batches of the environment's `max_parallel`: a batch starts only once every
node of the one before is back and healthy, so a restart never takes more than one batch down.
A node that fails stops the operation there; the nodes not reached are recorded as skipped.

Rule: record after acting. A node's outcome is stored when its step ends; an operation cut short
(Ctrl-C, SIGTERM) records `interrupted` and releases its locks on the way out. A restart is
idempotent, so running the command again is how an interrupted one is finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from edeliver.core.domain.errors import LockHeldError, NodeError, RefusedError, UsageError
from edeliver.core.domain.operation import (
    ABANDONED,
    FAILED,
    INTERRUPTED,
    NODE_FAILED,
    NODE_OK,
    REFUSED,
    RESTART,
    START,
    STOP,
    SUCCEEDED,
    Operation,
)
from edeliver.core.domain.redaction import Redactor
from edeliver.core.domain.strategy import batches
from edeliver.core.domain.tasks import OUTPUT_LIMIT
from edeliver.core.ports import Clock, NodeClaim, NodeControl
from edeliver.core.usecases.service import Deployments

Act = Callable[[NodeControl], Awaitable[str]]  # the step on one node; returns what it did
ACTIONS: dict[str, Act] = {
    START: lambda control: control.start_release(),
    STOP: lambda control: control.stop_release(),
    RESTART: lambda control: control.restart_release(),
}


def migration(function: str) -> Act:
    """The step of `migrate`: the configured function evaluated with the release's code."""
    return lambda control: control.run_migration(function)


@dataclass(frozen=True)
class OperationRequest:
    """What to do to which nodes (in the environment's order), in batches of `max_parallel`."""

    app: str
    environment: str
    action: str
    nodes: tuple[str, ...]
    max_parallel: int | None
    subset: bool  # --node / --label chose these nodes out of the environment's


OpenControl = Callable[[str], Awaitable[NodeControl]]


async def operate(
    request: OperationRequest,
    open_control: OpenControl,
    deployments: Deployments,
    clock: Clock,
    user: str,
    operation_id: str,
    act: Act | None = None,
    redact: Redactor | None = None,
) -> Operation:
    """Lock the environment and the nodes, act batch by batch, record every node's outcome;
    the ended Operation (its `outcome` says how it went). LockHeldError if another holds the
    environment, or a node (then nothing was done on any node). `act`: the step on each node
    (default: the request's action's); what it says is kept without `redact`'s secrets."""
    at = _now(clock)
    operation = Operation(
        operation_id, request.app, request.environment, request.action, list(request.nodes),
        [list(b) for b in batches(request.nodes, request.max_parallel)], request.subset, user, at,
    )  # fmt: skip
    deployments.take_environment(
        request.app, request.environment, operation_id, user, at, request.action,
        operation.collect_events(),
    )  # fmt: skip
    outcome, controls = INTERRUPTED, _Controls(open_control)
    try:
        await controls.hold_all(request.nodes, NodeClaim(operation_id, request.environment, user))
        step = act or ACTIONS[request.action]
        outcome = await _batches(
            operation, controls, _kept(step, redact or Redactor()), deployments
        )
    except RefusedError:
        outcome = REFUSED
        raise
    finally:
        await controls.close()
        operation.finish(outcome, _now(clock))
        deployments.release_environment(
            request.app, request.environment, operation_id, outcome, operation
        )
    return operation


async def _batches(
    operation: Operation, controls: _Controls, act: Act, deployments: Deployments
) -> str:
    for batch in operation.batches:
        results = await asyncio.gather(*(_act(controls.of(n), act) for n in batch))
        for node, (outcome, detail) in zip(batch, results, strict=True):
            operation.node_done(node, outcome, detail)
        deployments.save(operation)
        if operation.failed_nodes:
            return FAILED
    return SUCCEEDED


def _kept(act: Act, redact: Redactor) -> Act:
    """`act`, what it says and its errors bounded to their ends and without secrets (they are
    stored in events)."""

    async def kept(control: NodeControl) -> str:
        try:
            return redact(await act(control))[-OUTPUT_LIMIT:]
        except NodeError as error:
            raise NodeError(redact(str(error))[-OUTPUT_LIMIT:]) from None

    return kept


async def _act(control: NodeControl, act: Act) -> tuple[str, str]:
    try:
        return NODE_OK, await act(control)
    except NodeError as error:
        return NODE_FAILED, str(error)


class _Controls:
    """The open connections of one operation, each node's lock taken before any node acts."""

    def __init__(self, open_control: OpenControl) -> None:
        self.open_control = open_control
        self.opened: dict[str, NodeControl] = {}

    def of(self, node: str) -> NodeControl:
        return self.opened[node]

    async def hold_all(self, nodes: Sequence[str], claim: NodeClaim) -> None:
        results = await asyncio.gather(
            *(self._hold(n, claim) for n in nodes), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        held = [e for e in errors if isinstance(e, LockHeldError)]
        if held or errors:
            raise held[0] if held else errors[0]

    async def _hold(self, node: str, claim: NodeClaim) -> None:
        try:
            self.opened[node] = await self.open_control(node)
            await self.opened[node].hold(claim)
        except NodeError as error:  # unreachable: nothing is done on any node
            raise RefusedError(f"{error}; nothing was done on any node") from error

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.opened.values()), return_exceptions=True)


@dataclass(frozen=True)
class OperationSummary:
    """One operation as `edeliver history` lists it."""

    id: str
    app: str
    environment: str
    action: str
    nodes: list[str]
    subset: bool
    started_by: str
    started_at: str
    outcome: str | None
    ended_at: str | None


def operation_history(deployments: Deployments) -> list[OperationSummary]:
    """Every operation in the order they started, with its outcome when it has one."""
    rows: dict[str, dict[str, Any]] = {}
    started, finished = Operation.Started, Operation.Finished  # type: ignore[attr-defined]
    for stored in deployments.stored_events((started, finished)):
        row = rows.setdefault(str(stored.originator_id), {"outcome": None, "ended_at": None})
        fields = vars(stored)
        if isinstance(stored, started):
            row.update({k: fields[k] for k in _SUMMARY_FIELDS})
        else:
            row.update(outcome=fields["outcome"], ended_at=fields["at"])
    return [OperationSummary(id=i, **r) for i, r in rows.items() if "app" in r]


_SUMMARY_FIELDS = ("app", "environment", "action", "nodes", "subset", "started_by", "started_at")


def find_operation(deployments: Deployments, id_or_prefix: str) -> OperationSummary | None:
    """The operation an id or an unambiguous prefix of it names; None when none does."""
    matches = [s for s in operation_history(deployments) if s.id.startswith(id_or_prefix.lower())]
    return matches[0] if len(matches) == 1 else None


def abandon_operation(
    deployments: Deployments, summary: OperationSummary, reason: str, at: str
) -> None:
    """End an operation whose deployer died before it could (SIGKILL, a lost machine): its
    environment is released and its unreached nodes recorded as skipped."""
    found: object = deployments.repository.get(UUID(summary.id))
    assert isinstance(found, Operation)
    if found.outcome is not None:
        raise UsageError(f"operation {found.short_id} already ended ({found.outcome})")
    found.finish(ABANDONED, at, reason)
    deployments.release_environment(found.app, found.environment, summary.id, ABANDONED, found)


def _now(clock: Clock) -> str:
    return clock.now().isoformat(timespec="seconds")
