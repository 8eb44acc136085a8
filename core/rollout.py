"""The use cases: deploy a version to an environment, resume an interrupted deployment.

Each takes its collaborators in a `Services` bundle (the composition root builds the real one,
tests build one of fakes) and returns the ended Deployment; the CLI turns it into an exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import NoReturn, TypeVar
from uuid import uuid4

from edeliver.core.config import Config, EnvironmentConfig
from edeliver.core.deployment import Deployment
from edeliver.core.errors import (
    DeploymentInterrupted,
    EdeliverError,
    EventStoreError,
    HistoryConflict,
    NodeError,
    RefusedError,
    UsageError,
)
from edeliver.core.journal import Patience, Warn, patiently
from edeliver.core.lifecycle import IN_FLIGHT, ROLLING_BACK
from edeliver.core.liveness import hold_every_node, refuse_while_its_deployer_holds_nodes
from edeliver.core.loaded_task import LoadedTask
from edeliver.core.model import Artifact, NodeFacts
from edeliver.core.orchestrator import Journal, Listener, Orchestrator, SaveEvents
from edeliver.core.ports import Clock, CommandHost, NodeShells, ReleaseStore
from edeliver.core.redaction import Redactor
from edeliver.core.runtime_env import runtimes
from edeliver.core.service import Deployments
from edeliver.core.strategy import batches
from edeliver.core.tasks import Selection
from edeliver.core.uniform import check_rollout
from edeliver.core.versions import artifact_to_deploy

T = TypeVar("T")


@dataclass
class Services:
    deployments: Deployments
    shells: NodeShells
    store: ReleaseStore
    clock: Clock
    user: str  # who deploys, as "user@host", for the lock and the history
    listener: Listener | None = None
    # How events reach the store; tests wrap it to simulate a deployer that dies mid-write.
    save: SaveEvents | None = None
    new_id: Callable[[], str] = lambda: str(uuid4())
    # The project's tasks (DESIGN §7), where `local` ones run, and what every task is given.
    tasks: Sequence[LoadedTask] = ()
    local: CommandHost | None = None
    task_env: Mapping[str, str] = field(default_factory=dict)
    # Hides the deployer's secrets in output kept in events (the composition root fills it in).
    redact: Redactor = field(default_factory=Redactor)
    # Deployments in mode "upgrade" (hot code upgrades) go through these; None: `shells`.
    upgrade_shells: NodeShells | None = None
    # How long a failing event store is retried before the rollout stops (`journal.Patience`).
    patience: Patience | None = None
    # Where the journal says that the store is failing and being retried (stderr in the CLI).
    warn: Warn | None = None
    # The deployer's environment, where the config's `from_env` secrets are taken from.
    deployer_env: Mapping[str, str] = field(default_factory=dict)

    def saver(self) -> SaveEvents:
        return self.save or (lambda events: self.deployments.save(*events))

    def shells_for(self, mode: str) -> NodeShells:
        return self.upgrade_shells if mode == "upgrade" and self.upgrade_shells else self.shells


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
    app = _app_of(config)
    artifact = await artifact_to_deploy(services.store, app, version)
    subset = nodes is not None and bool(set(env.nodes) - set(nodes))
    if subset:
        env = replace(env, nodes=tuple(n for n in env.nodes if n in (nodes or ())))
    deployment = _new_deployment(services, app, env, artifact, selection or Selection(), subset)
    await _in_thread(services.deployments.begin, deployment)
    orchestrator = _orchestrator(services, config, env, deployment, artifact)
    await _before_any_node_changes(
        orchestrator, services, deployment,
        partial(_checked_probes, orchestrator, deployment, artifact, services),
        partial(_before_rollout, orchestrator, deployment, services),
    )  # fmt: skip
    return await _drive(orchestrator, services, deployment)


async def resume(
    services: Services, config: Config, deployment_id: str | None, force: bool = False
) -> Deployment:
    """Continue an interrupted deployment from its stored events (unless its deployer may still
    be running it, or `force`)."""
    deployment = await _in_thread(_unfinished, services.deployments, deployment_id)
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
    await _claim(orchestrator, deployment)
    steps = [
        partial(_reprobe_in_flight, orchestrator, deployment),
        partial(_before_rollout, orchestrator, deployment, services),
    ]
    if set(deployment.previous) != set(deployment.order):
        # It died before all its probes were stored, so before any change: check them again.
        steps.insert(0, partial(_checked_probes, orchestrator, deployment, artifact, services))
    await _before_any_node_changes(orchestrator, services, deployment, *steps)
    return await _drive(orchestrator, services, deployment)


async def _before_any_node_changes(
    orchestrator: Orchestrator,
    services: Services,
    deployment: Deployment,
    *steps: Callable[[], Awaitable[None]],
) -> None:
    """Probes and before-rollout tasks, in order; Ctrl-C or a store failing for good here
    stops the deployment the way it stops a rollout: resumable, exit 4."""
    try:
        for step in steps:
            await step()
    except (asyncio.CancelledError, KeyboardInterrupt):
        await _stop_early(orchestrator, services, deployment, "interrupted (Ctrl-C or SIGTERM)")
    except HistoryConflict as error:
        await orchestrator.close()
        raise _taken_over(deployment, error) from None
    except EventStoreError as error:
        await _stop_early(orchestrator, services, deployment, f"stopped: {error}")


async def _stop_early(
    orchestrator: Orchestrator, services: Services, deployment: Deployment, why: str
) -> NoReturn:
    await orchestrator.close()
    await _record_interruption(orchestrator, services, deployment, why)


def _app_of(config: Config) -> str:
    if not config.app:
        raise UsageError(f"{config.file}: app: not set and no mix.exs project name found")
    return config.app


def _new_deployment(
    services: Services,
    app: str,
    env: EnvironmentConfig,
    artifact: Artifact,
    selection: Selection,
    subset: bool = False,
) -> Deployment:
    policy = env.policy
    return Deployment(
        deployment_id=services.new_id(),
        app=app,
        environment=env.name,
        version=artifact.version,
        mode=env.mode,
        policy={
            "strategy": policy.strategy,
            "fallback": policy.fallback,
            "max_parallel": policy.max_parallel,
            "max_failures": policy.max_failures,
        },
        order=list(env.nodes),
        batches=[list(b) for b in batches(env.nodes, policy.max_parallel)],
        started_by=services.user,
        started_at=_now(services),
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
    return Orchestrator(
        deployment, artifact, nodes, shells, journal, env.step_timeout,
        tasks=services.tasks, local=services.local, task_env=services.task_env,
        redact=services.redact,
    )  # fmt: skip


async def _checked_probes(
    orchestrator: Orchestrator, deployment: Deployment, artifact: Artifact, services: Services
) -> None:
    """Lock and probe every node before any change; refuse, record why and end if one cannot
    take it (another deployment holds it, it cannot be reached, or it differs)."""
    try:
        await hold_every_node(deployment, orchestrator.shell, services.user)
        facts = dict(
            zip(
                deployment.order,
                await asyncio.gather(*(_probe(orchestrator, n) for n in deployment.order)),
                strict=True,
            )
        )
        for node, node_facts in facts.items():
            deployment.probed(node, node_facts.as_dict())
        check_rollout(facts, artifact)
    except EdeliverError as error:
        deployment.refuse(str(error), _now(services))
        await _end(orchestrator, services, deployment)
        raise


async def _before_rollout(
    orchestrator: Orchestrator, deployment: Deployment, services: Services
) -> None:
    """The tasks that run before any node changes; a critical failure refuses the deployment."""
    try:
        await orchestrator.runner.before_rollout(orchestrator.shell)
    except RefusedError as error:
        deployment.refuse(str(error), _now(services))
        await _end(orchestrator, services, deployment)
        raise


async def _probe(orchestrator: Orchestrator, node: str) -> NodeFacts:
    """A node that cannot be probed refuses the whole deployment, before anything changed."""
    try:
        return await (await orchestrator.shell(node)).probe()
    except NodeError as error:
        raise RefusedError(f"{error}; nothing was changed on any node") from error


async def _reprobe_in_flight(orchestrator: Orchestrator, deployment: Deployment) -> None:
    """Ask each node that was mid-step what it runs now; recorded for the audit trail."""
    for node in deployment.nodes_in(*IN_FLIGHT, ROLLING_BACK):
        # An unreachable node is not an error here: its step will meet the same error and fail.
        with contextlib.suppress(NodeError):
            deployment.probed(node, (await (await orchestrator.shell(node)).probe()).as_dict())


async def _drive(
    orchestrator: Orchestrator, services: Services, deployment: Deployment
) -> Deployment:
    try:
        await orchestrator.run()
    except (asyncio.CancelledError, KeyboardInterrupt):
        await _record_interruption(
            orchestrator, services, deployment, "interrupted (Ctrl-C or SIGTERM)"
        )
    except HistoryConflict as error:
        raise _taken_over(deployment, error) from None
    except EventStoreError as error:
        await _record_interruption(
            orchestrator, services, deployment, f"stopped, nothing further started: {error}"
        )
    except Exception as error:  # a bug, say: stop, resumable, and say why
        await _record_interruption(orchestrator, services, deployment, f"stopped by {error!r}")
    deployment.finish(_now(services))
    await _store_end(services, deployment)
    return deployment


async def _claim(orchestrator: Orchestrator, deployment: Deployment) -> None:
    """Store `Resumed` before anything else happens: of two resumes at once, one stores it and
    goes on, the other is refused here, before it touched any node."""
    try:
        await orchestrator.journal.commit()
    except EventStoreError as error:
        await orchestrator.close()
        if isinstance(error, HistoryConflict):
            raise HistoryConflict(
                f"deployment {deployment.short_id} was resumed (or abandoned) by another "
                "deployer at the same moment; this one did nothing: `edeliver log "
                f"{deployment.short_id}` shows who"
            ) from None
        raise


def _taken_over(deployment: Deployment, error: HistoryConflict) -> HistoryConflict:
    """Another deployer wrote this deployment while we ran it (`resume --force`, `abandon`):
    stop at once and record nothing more, since our events would interleave with theirs."""
    short = deployment.short_id
    return HistoryConflict(
        f"deployment {short}: another deployer took it over (it stored the next event first), "
        f"so this one stopped and recorded nothing more; `edeliver log {short}` shows who"
    )


async def _record_interruption(
    orchestrator: Orchestrator, services: Services, deployment: Deployment, why: str
) -> NoReturn:
    """Store what was done and the interruption (one last try, if the store failed), then exit
    4 with the command that will work: plain `resume`, since this deployer's node locks go
    with it; without a stored interruption, `--force` where no node can be asked."""
    deployment.interrupt(why)
    short = deployment.short_id
    try:
        await orchestrator.journal.store_rest()
    except Exception:
        raise DeploymentInterrupted(
            f"deployment {short} {why}; its interruption could not be recorded either, so "
            f"once the event store works again: `edeliver resume {short}` (with `--force` if "
            "none of its nodes can be reached)"
        ) from None
    raise DeploymentInterrupted(f"deployment {short} {why}; `edeliver resume {short}`")


async def _store_end(services: Services, deployment: Deployment) -> None:
    """Record the outcome and release the environment; if the store fails now, the nodes are
    done but the deployment is not ended: resume records its end."""
    patience, store = services.patience or Patience(), services.deployments.store
    try:
        await patiently(
            partial(_in_thread, services.deployments.end, deployment),
            patience,
            store,
            services.warn,
        )
    except EventStoreError as error:
        short = deployment.short_id
        raise DeploymentInterrupted(
            f"deployment {short} {deployment.outcome} on every node, but its end could not be "
            f"recorded: {error}; once the event store works again: `edeliver resume {short}` "
            "(with `--force` if none of its nodes can be reached)"
        ) from None


async def _end(orchestrator: Orchestrator, services: Services, deployment: Deployment) -> None:
    """End a deployment that never started rolling out (it was refused)."""
    await orchestrator.close()
    await _in_thread(services.deployments.end, deployment)


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
    if deployment.finished:
        raise UsageError(f"deployment {deployment.short_id} already ended ({deployment.outcome})")
    return deployment


def _now(services: Services) -> str:
    return services.clock.now().isoformat(timespec="seconds")


async def _in_thread(function: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args))
