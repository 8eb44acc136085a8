"""Asking nodes what they run outside a deployment (`status`, `releases prune`, the version an
upgrade is built from): a connection opened for the question and closed after it."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from edeliver.core.domain.config import Config, NodeConfig
from edeliver.core.domain.errors import EdeliverError, NodeUnreachable, NotUniformError, UsageError
from edeliver.core.domain.model import NodeFacts
from edeliver.core.ports import NodeShells

_NOTHING = "nothing"  # what a node runs before its first deploy, in the grouping below


async def probe_node(shells: NodeShells, node: NodeConfig) -> NodeFacts:
    """Open a connection to the node, probe it, close the connection."""
    shell = await shells.open(node)
    try:
        return await shell.probe()
    finally:
        await shell.close()


async def probe_all(
    shells: NodeShells, nodes: Sequence[NodeConfig], addresses: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One row per node, in order: its address and facts, or why it could not be probed (with
    the exit code that error maps to)."""
    return list(await asyncio.gather(*(_row(shells, n, addresses or {}) for n in nodes)))


async def _row(
    shells: NodeShells, node: NodeConfig, addresses: Mapping[str, str]
) -> dict[str, Any]:
    row: dict[str, Any] = {"node": node.name, "address": addresses.get(node.name, node.address)}
    try:
        facts = await probe_node(shells, node)
    except EdeliverError as error:
        return {**row, "reachable": False, "error": str(error), "exit_code": error.exit_code}
    return {**row, "reachable": True, **facts.as_dict()}


def mixed(rows: list[dict[str, Any]]) -> str:
    """Which nodes run which version, when the reachable ones do not all run the same one
    (or boot the same one); "" when they agree."""
    reachable = [row for row in rows if row["reachable"]]
    versions: dict[str, list[str]] = {}
    for row in reachable:
        running = row["running_version"] or "nothing"
        versions.setdefault(running, []).append(row["node"])
    booting = {row["current_version"] for row in reachable}
    if len(versions) <= 1 and len(booting) <= 1:
        return ""
    return "; ".join(f"{version} on {', '.join(names)}" for version, names in versions.items())


def running_version(environment: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """The one version the environment's nodes run (rows of `probe_all`); else refuse, saying
    which node runs what and the upgrades to build instead."""
    down = [f"{r['node']} ({r['error']})" for r in rows if not r["reachable"]]
    if down:
        raise NodeUnreachable(
            "cannot learn the running version: " + "; ".join(down) + "; name it with --from"
        )
    by_version: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_version[row["running_version"] or _NOTHING].append(row["node"])
    if len(by_version) != 1:
        listed = "; ".join(f"{v} on {', '.join(nodes)}" for v, nodes in by_version.items())
        plan = " and ".join(
            f"`edeliver build upgrade --from {v}`" for v in by_version if v != _NOTHING
        )
        raise NotUniformError(
            f"the nodes of {environment} run different versions ({listed}); build one upgrade "
            f"per version ({plan}, with the same --to): each node then takes the one from its "
            "version"
        )
    (version,) = by_version
    if version == _NOTHING:
        raise UsageError(
            f"no node of {environment} runs a release: deploy one first (mode = release)"
        )
    return version


def only_upgrade_environment(config: Config) -> str:
    """The environment an upgrade is built for when none is named: the one in mode "upgrade"."""
    hot_ones = [e.name for e in config.environments.values() if e.mode == "upgrade"]
    if len(hot_ones) != 1:
        raise UsageError(
            "name the environment whose running version to upgrade from (--environment ENV) "
            "or the version (--from V)"
        )
    return hot_ones[0]
