"""The variables a task's commands see: edeliver 1.x's (APP, HOSTS, DELIVER_TO ...), so legacy
hooks keep working, for a node's stages, the stages around the rollout and a build's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.deployment import Deployment


def rollout_task_env(
    deployment: Deployment, nodes: Mapping[str, NodeConfig], stage: str, task: str,
    node: str | None, env: Mapping[str, str],
) -> dict[str, str]:  # fmt: skip
    """What a task's commands see at a rollout's stage: the deployer's `env`, then edeliver
    1.x's variables for the node, or for every node of the deployment (`node` None)."""
    d = deployment
    targets = [nodes[n] for n in ([node] if node else d.order)]
    return {
        **env,
        "APP": d.app,
        "VERSION": d.release,
        "ENVIRONMENT": d.environment,
        "STAGE": stage,
        "TASK": task,
        "NODE": node or "",
        "HOSTS": " ".join(t.host for t in targets),
        "APP_USER": targets[0].user or "" if targets else "",
        "DELIVER_TO": _deliver_to(targets[0].path, d.app) if targets else "",
        "DEPLOY_PATH": targets[0].path if targets else "",
        "FIRST_DEPLOY": "true" if node and d.previous.get(node) is None else "false",
        "EDELIVER_SSH_TARGETS": "\n".join(_ssh_target(t) for t in targets),
    }


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
