"""Node locks from the core's side: take every node's before a change, and ask them whether a
deployment's deployer is still at work (DESIGN §5).

A deployer holds the lock of each of its deployment's nodes for its whole run, kept by
heartbeats the node itself judges (see `adapters.node_lock`). So "its deployer may still run"
is asked of the nodes: a node locked by the deployment means a live deployer; no node locked by
it means none, and `resume` / `abandon` go ahead at once. Only when no node can be asked at all
does the older rule decide: its last event is less than `quiet_period` old by this clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta

from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.errors import LockHeldError, NodeError, RefusedError
from edeliver.core.ports import NodeClaim, NodeLockHolder, NodeShell, NodeShells

OpenShell = Callable[[str], Awaitable[NodeShell]]


async def hold_every_node(deployment: Deployment, shell: OpenShell, deployer: str) -> None:
    """Lock each node of the deployment for it; LockHeldError naming the holder if one is
    locked by another (after every attempt ended, so that closing the shells frees them all)."""
    claim = NodeClaim(str(deployment.id), deployment.environment, deployer)

    async def take(node: str) -> None:
        try:
            await (await shell(node)).hold(claim)
        except NodeError as error:  # unreachable: refused like a node that cannot be probed
            raise RefusedError(f"{error}; nothing was changed on any node") from error

    results = await asyncio.gather(*(take(n) for n in deployment.order), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    held = [e for e in errors if isinstance(e, LockHeldError)]
    if held:
        more = f" (and {len(held) - 1} more nodes are locked)" if len(held) > 1 else ""
        raise LockHeldError(f"{held[0]}{more}")
    if errors:
        raise errors[0]


async def refuse_while_its_deployer_holds_nodes(
    deployment: Deployment, shell: OpenShell, now: datetime, step_timeout: float
) -> None:
    """Before resuming or abandoning without --force: LockHeldError naming a node that the
    deployment's deployer still holds with a live heartbeat; the clock rule only when no node
    answers."""
    answers = await asyncio.gather(*(_holder(shell, n) for n in deployment.order))
    mine = [a for a in answers if a and a.deployment_id == str(deployment.id)]
    if mine:
        raise LockHeldError(
            f"deployment {deployment.short_id} is still run by a live deployer: "
            f"{mine[0].describe()}; wait for it to end, or pass --force only if you know it "
            "is gone (its nodes are then taken once their heartbeats stop)"
        )
    if all(a is _UNREACHABLE for a in answers):
        refuse_while_its_deployer_may_run(deployment, now, step_timeout)


async def refuse_abandoning_while_held(
    deployment: Deployment,
    shells: NodeShells,
    nodes: Mapping[str, NodeConfig],
    now: datetime,
    step_timeout: float,
) -> None:
    """`refuse_while_its_deployer_holds_nodes` over connections opened for the question only;
    a node no longer configured counts as one that cannot be asked."""
    opened: list[NodeShell] = []

    async def shell(node: str) -> NodeShell:
        if node not in nodes:
            raise NodeError(f"{node} is no longer configured")
        opened.append(await shells.open(nodes[node]))
        return opened[-1]

    try:
        await refuse_while_its_deployer_holds_nodes(deployment, shell, now, step_timeout)
    finally:
        await asyncio.gather(*(s.close() for s in opened), return_exceptions=True)


_UNREACHABLE = NodeLockHolder("", "", "", "", "", 0.0, 0)


async def _holder(shell: OpenShell, node: str) -> NodeLockHolder | None:
    try:
        return await (await shell(node)).lock_holder()
    except NodeError:
        return _UNREACHABLE


def quiet_period(step_timeout: float) -> timedelta:
    """How long a live deployer may go without writing an event: every step ends or times out
    within `step_timeout`; twice that and a minute more is taken as a deployer that is gone."""
    return timedelta(seconds=2 * step_timeout + 60)


def refuse_while_its_deployer_may_run(
    deployment: Deployment, now: datetime, step_timeout: float
) -> None:
    """Before resuming or abandoning, when none of its nodes can be asked about their locks
    (`core.liveness`): LockHeldError if by the event clock the deployer may still be at work."""
    quiet = quiet_period(step_timeout)
    if deployment.may_have_a_live_deployer(now, quiet):
        last = deployment.modified_on
        raise LockHeldError(
            f"deployment {deployment.short_id} ({deployment.environment}, started by "
            f"{deployment.started_by}) wrote its last event at {_utc(last)} and recorded no "
            f"interruption: its deployer may still be running; wait until {_utc(last + quiet)}, "
            "or pass --force if you know it is gone"
        )


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
