"""The use cases: deploy a version to an environment, resume an interrupted deployment.

Each takes its collaborators in a `Services` bundle (the composition root builds the real one,
tests build one of fakes) and returns the ended Deployment; the CLI turns it into an exit code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial

from edeliver.core.domain.app import app_name
from edeliver.core.domain.config import Config, EnvironmentConfig
from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.errors import UsageError
from edeliver.core.domain.model import Artifact
from edeliver.core.domain.rollout_states import RolloutTrigger
from edeliver.core.domain.runtime_env import runtimes
from edeliver.core.domain.strategy import batches, policy_fields
from edeliver.core.domain.tasks import Selection
from edeliver.core.usecases.journal import Journal
from edeliver.core.usecases.liveness import hold_every_node, refuse_while_its_deployer_holds_nodes
from edeliver.core.usecases.orchestrator import Orchestrator
from edeliver.core.usecases.planning import artifact_to_deploy
from edeliver.core.usecases.preflight import before_rollout, checked_probes, reprobe_in_flight
from edeliver.core.usecases.rollout_endings import before_any_node_changes, claim, drive
from edeliver.core.usecases.service import Deployments
from edeliver.core.usecases.services import Services, in_thread, now_text, shells_for

__all__ = ["Services", "deploy", "resume", "shells_for"]  # Services: where tests found it


async def deploy(
    services: Services,
    config: Config,
    environment: str,
    version: str | None,
    selection: Selection | None = None,
    nodes: Sequence[str] | None = None,
) -> Deployment:
    """Roll `version` (default: the newest in the store) out to `environment` (only to `nodes`
    of it when given, in the environment's order, recorded as a subset), running the tasks
    `selection` picks at their stages."""
    env = config.environment(environment)
    runtimes(config, env.name, services.deployer_env)  # a missing secret: refused, exit 2
    app = app_name(config)
    artifact = await artifact_to_deploy(services.store, app, version)
    subset = nodes is not None and bool(set(env.nodes) - set(nodes))
    if subset:
        env = replace(env, nodes=tuple(n for n in env.nodes if n in (nodes or ())))
    deployment = _new_deployment(services, app, env, artifact, selection or Selection(), subset)
    await in_thread(services.deployments.begin, deployment)
    orchestrator = _orchestrator(services, config, env, deployment, artifact)
    await before_any_node_changes(
        orchestrator, services, deployment,
        partial(checked_probes, orchestrator, deployment, artifact, services),
        partial(before_rollout, orchestrator, deployment, services),
    )  # fmt: skip
    return await drive(orchestrator, services, deployment)


async def resume(
    services: Services, config: Config, deployment_id: str | None, force: bool = False
) -> Deployment:
    """Continue an interrupted deployment from its stored events (unless its deployer may still
    be running it, or `force`)."""
    deployment = await in_thread(_unfinished, services.deployments, deployment_id)
    env = config.environment(deployment.environment)
    runtimes(config, env.name, services.deployer_env)  # a missing secret: refused, exit 2
    artifact = await services.store.artifact(deployment.app, deployment.release)
    orchestrator = _orchestrator(services, config, env, deployment, artifact)
    try:
        if not force:
            now = services.clock.now()
            await refuse_while_its_deployer_holds_nodes(
                deployment, orchestrator.shell, now, env.step_timeout
            )
        await hold_every_node(deployment, orchestrator.shell, services.user)
    except BaseException:
        await orchestrator.close()  # frees the nodes it took, records nothing
        raise
    deployment.resume(services.user)
    await claim(orchestrator, deployment)
    steps = [
        partial(reprobe_in_flight, orchestrator, deployment),
        partial(before_rollout, orchestrator, deployment, services),
    ]
    if set(deployment.previous) != set(deployment.order):
        # It died before all its probes were stored, so before any change: check them again.
        steps.insert(0, partial(checked_probes, orchestrator, deployment, artifact, services))
    await before_any_node_changes(orchestrator, services, deployment, *steps)
    return await drive(orchestrator, services, deployment)


def _new_deployment(
    services: Services,
    app: str,
    env: EnvironmentConfig,
    artifact: Artifact,
    selection: Selection,
    subset: bool = False,
) -> Deployment:
    return Deployment(
        deployment_id=services.new_id(),
        app=app,
        environment=env.name,
        version=artifact.version,
        mode=env.mode,
        policy=policy_fields(env.policy),
        order=list(env.nodes),
        batches=[list(b) for b in batches(env.nodes, env.policy.max_parallel)],
        started_by=services.user,
        started_at=now_text(services),
        selection={
            "include": sorted(selection.include),
            "exclude": sorted(selection.exclude),
            "only": sorted(selection.only),
        },
        subset=subset,
    )


def _orchestrator(
    services: Services,
    config: Config,
    env: EnvironmentConfig,
    deployment: Deployment,
    artifact: Artifact,
) -> Orchestrator:
    journal = Journal(
        deployment, services.saver(), services.listener,
        store=services.deployments.store, patience=services.patience, warn=services.warn,
    )  # fmt: skip
    missing = [name for name in deployment.order if name not in config.nodes]
    if missing:
        raise UsageError(
            f"{config.file}: nodes {', '.join(missing)} of deployment {deployment.short_id} "
            "are no longer defined; restore them, or `edeliver abandon` it"
        )
    nodes = {name: config.nodes[name] for name in deployment.order}
    shells = services.shells_for(deployment.mode)
    shells.expect(artifact)
    return Orchestrator(
        deployment, artifact, nodes, shells, journal, env.step_timeout,
        tasks=services.tasks, local=services.local, task_env=services.task_env,
        redact=services.redact,
    )  # fmt: skip


def _unfinished(deployments: Deployments, deployment_id: str | None) -> Deployment:
    if deployment_id is None:
        pending = deployments.unfinished()
        if not pending:
            raise UsageError("no interrupted deployment to resume")
        if len(pending) > 1:
            ids = ", ".join(f"{s.id[:8]} ({s.environment})" for s in pending)
            raise UsageError(f"several interrupted deployments, name one: {ids}")
        deployment_id = pending[0].id
    deployment = deployments.load(deployment_id)
    deployment.guard(RolloutTrigger.RESUME)  # before any node is asked: it may have ended
    return deployment
