"""`--node NAME` / `--label L`: the part of an environment a command acts on."""

from __future__ import annotations

from collections.abc import Sequence

from edeliver.core.domain.config import Config, NodeConfig
from edeliver.core.domain.errors import NotFoundError


def selected_nodes(
    config: Config, environment: str, names: Sequence[str] = (), labels: Sequence[str] = ()
) -> tuple[NodeConfig, ...]:
    """The environment's nodes that `names` name or that carry one of `labels`, in the
    environment's order; every node when neither is given. A name that is not a node of the
    environment, or a label none of its nodes carries, is an error naming it."""
    members = config.nodes_of(environment)
    if not names and not labels:
        return members
    known = [n.name for n in members]
    for name in names:
        if name not in known:
            raise NotFoundError(
                f"--node {name}: not a node of environment {environment!r} "
                f"(its nodes: {', '.join(known)})"
            )
    for label in labels:
        if not any(label in n.labels for n in members):
            raise NotFoundError(
                f"--label {label}: no node of environment {environment!r} carries it"
            )
    return tuple(n for n in members if n.name in names or set(labels) & set(n.labels))


def is_subset(config: Config, environment: str, nodes: Sequence[NodeConfig]) -> bool:
    """Whether `nodes` leaves out some of the environment's nodes."""
    return len(nodes) < len(config.environment(environment).nodes)
