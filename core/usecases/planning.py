"""What a deployment would do (`edeliver plan`), and which release `rollback` returns to:
answers from the config, the store and the history, changing nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edeliver.core.domain.config import Config, EnvironmentConfig
from edeliver.core.domain.errors import UsageError
from edeliver.core.domain.rollout_states import Outcome
from edeliver.core.domain.strategy import batches

if TYPE_CHECKING:  # `plan` loads no event-sourced record (eventsourcing)
    from edeliver.core.domain.model import Artifact
    from edeliver.core.ports import ReleaseStore
    from edeliver.core.usecases.service import DeploymentSummary

STEPS = {
    "release": [
        "upload + verify sha256",
        "unpack beside",
        "switch current + restart",
        "health check",
    ],
    "upgrade": [
        "upload + verify sha256",
        "unpack_release",
        "install_release",
        "health check + make_permanent",
    ],
}


@dataclass(frozen=True)
class Plan:
    """The nodes (with their resolved addresses and paths), batches and steps of a deployment."""

    environment: EnvironmentConfig
    nodes: Mapping[str, tuple[str, str]]  # name -> (address, deploy path)
    batches: tuple[tuple[str, ...], ...]
    steps: Sequence[str]

    def as_dict(self) -> dict[str, Any]:
        env, policy = self.environment, self.environment.policy
        return {
            "environment": env.name,
            "mode": env.mode,
            "strategy": policy.strategy,
            "fallback": policy.fallback,
            "max_failures": policy.max_failures,
            "nodes": {name: f"{address}:{path}" for name, (address, path) in self.nodes.items()},
            "batches": [list(b) for b in self.batches],
            "steps": list(self.steps),
        }


def plan(config: Config, environment: str, addresses: Mapping[str, str]) -> Plan:
    """The plan of a deployment to `environment`; `addresses`: the nodes' resolved ones."""
    env = config.environment(environment)
    nodes = {
        name: (addresses.get(name, config.nodes[name].address), config.nodes[name].path)
        for name in env.nodes
    }
    return Plan(env, nodes, batches(env.nodes, env.policy.max_parallel), STEPS[env.mode])


def previous_release(history: Sequence[DeploymentSummary], environment: str) -> str:
    """The newest release deployed to the environment before its current one."""
    versions = [
        r.version
        for r in history
        if r.environment == environment and r.outcome == Outcome.SUCCEEDED
    ]
    earlier = [v for v in versions if v != versions[-1]] if versions else []
    if not earlier:
        raise UsageError(f"no earlier release was deployed to {environment}; name one with --to")
    return earlier[-1]


async def artifact_to_deploy(store: ReleaseStore, app: str, version: str | None) -> Artifact:
    """The release `version` names, by default the newest in the store (what `plan` shows)."""
    if version is None:
        versions = await store.versions(app)
        if not versions:
            raise UsageError(f"no release of {app} in the store; run `edeliver build` first")
        version = versions[-1]
    return await store.artifact(app, version)
