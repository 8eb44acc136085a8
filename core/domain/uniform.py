"""Uniform rollout (DESIGN §8): refuse before any change when nodes differ or cannot take it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from edeliver.core.domain.errors import NotUniformError, RefusedError
from edeliver.core.domain.model import Artifact, NodeFacts, Platform

_UNPACK_FACTOR = 3  # the tarball, its unpacked tree (about twice as big) and some slack


def check_rollout(facts: Mapping[str, NodeFacts], artifact: Artifact) -> None:
    """Raise unless every node runs one platform, the release's, and has room for it."""
    check_uniform(facts, artifact.platform)
    check_room(facts, artifact)


def check_uniform(facts: Mapping[str, NodeFacts], built_for: Platform) -> None:
    by_platform: dict[Platform, list[str]] = defaultdict(list)
    for node, node_facts in facts.items():
        by_platform[node_facts.platform].append(node)
    if len(by_platform) > 1:
        groups = "; ".join(f"{p}: {', '.join(nodes)}" for p, nodes in by_platform.items())
        raise NotUniformError(f"nodes run different platforms, refusing to deploy ({groups})")
    if built_for != Platform() and by_platform and built_for not in by_platform:
        ((platform, nodes),) = by_platform.items()
        raise NotUniformError(
            f"release built for {built_for}, but nodes {', '.join(nodes)} run {platform}"
        )


def check_room(facts: Mapping[str, NodeFacts], artifact: Artifact) -> None:
    needed = artifact.size * _UNPACK_FACTOR
    short = [
        node
        for node, node_facts in facts.items()
        if node_facts.free_bytes < needed and artifact.version not in node_facts.releases
    ]
    if short:
        raise RefusedError(
            f"not enough free disk for {artifact.name} ({needed} bytes needed) "
            f"on: {', '.join(short)}"
        )
