"""`edeliver releases prune`: which stored versions may go, and never one a node still needs.

A version is kept when it is among the newest `keep`, or when any node of any environment runs
it, boots it (`current`) or would roll back to it. Every node is probed first; one that cannot
be probed refuses the prune, since what it runs is unknown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import NodeError, RefusedError, UsageError
from edeliver.core.domain.model import NodeFacts
from edeliver.core.ports import NodeShells, ReleaseArchive
from edeliver.core.usecases.probes import probe_node


@dataclass(frozen=True)
class PrunePlan:
    removed: tuple[str, ...]
    kept: Mapping[str, str]  # version -> why it stays


def plan_prune(
    versions_oldest_first: Sequence[str], keep: int, facts: Mapping[str, NodeFacts]
) -> PrunePlan:
    """Pure: the versions to remove and, for each one kept, why."""
    if keep < 1:
        raise UsageError(f"--keep must be at least 1, got {keep}")
    newest = set(versions_oldest_first[-keep:])
    kept: dict[str, str] = {
        v: f"one of the {keep} newest" for v in versions_oldest_first if v in newest
    }
    for node, node_facts in sorted(facts.items()):
        for version, role in _needed(node_facts):
            kept.setdefault(version, f"{role} on {node}")
    removed = tuple(v for v in versions_oldest_first if v not in kept)
    return PrunePlan(removed, {v: kept[v] for v in versions_oldest_first if v in kept})


def _needed(facts: NodeFacts) -> list[tuple[str, str]]:
    roles = (
        (facts.running_version, "running"),
        (facts.current_version, "booted by current"),
        (facts.previous_version, "the rollback target"),
    )
    return [(version, role) for version, role in roles if version]


async def prune(
    store: ReleaseArchive,
    shells: NodeShells,
    nodes: Sequence[NodeConfig],
    app: str,
    keep: int,
    *,
    dry_run: bool = False,
) -> PrunePlan:
    """Probe every node, then remove what no node needs beyond the `keep` newest."""
    versions = list(await store.versions(app))
    probed = await asyncio.gather(*(_probe(shells, node) for node in nodes))
    plan = plan_prune(versions, keep, dict(zip((n.name for n in nodes), probed, strict=True)))
    if not dry_run:
        for version in plan.removed:
            await store.remove(app, version)
    return plan


async def _probe(shells: NodeShells, node: NodeConfig) -> NodeFacts:
    try:
        return await probe_node(shells, node)
    except NodeError as error:
        raise RefusedError(
            f"{error}; cannot tell what {node.name} runs, so nothing was removed from the store"
        ) from error
