"""How a rollout stops or ends (DESIGN §5): its end stored with the environment released; an
interruption recorded, resumable, exit 4; a deployment another deployer took over left alone.

Ctrl-C, SIGTERM and an event store failing for good stop a rollout the same way whether they
come before any node changed (`before_any_node_changes`) or while nodes change (`drive`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import NoReturn

from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.errors import DeploymentInterrupted, EventStoreError, HistoryConflict
from edeliver.core.usecases.journal import Patience, patiently
from edeliver.core.usecases.orchestrator import Orchestrator
from edeliver.core.usecases.services import Services, in_thread, now_text


async def before_any_node_changes(
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
        await stop_early(orchestrator, services, deployment, "interrupted (Ctrl-C or SIGTERM)")
    except HistoryConflict as error:
        await orchestrator.close()
        raise taken_over(deployment, error) from None
    except EventStoreError as error:
        await stop_early(orchestrator, services, deployment, f"stopped: {error}")


async def stop_early(
    orchestrator: Orchestrator, services: Services, deployment: Deployment, why: str
) -> NoReturn:
    await orchestrator.close()
    await record_interruption(orchestrator, services, deployment, why)


async def drive(
    orchestrator: Orchestrator, services: Services, deployment: Deployment
) -> Deployment:
    try:
        await orchestrator.run()
    except (asyncio.CancelledError, KeyboardInterrupt):
        await record_interruption(
            orchestrator, services, deployment, "interrupted (Ctrl-C or SIGTERM)"
        )
    except HistoryConflict as error:
        raise taken_over(deployment, error) from None
    except EventStoreError as error:
        await record_interruption(
            orchestrator, services, deployment, f"stopped, nothing further started: {error}"
        )
    except Exception as error:  # a bug, say: stop, resumable, and say why
        await record_interruption(orchestrator, services, deployment, f"stopped by {error!r}")
    deployment.finish(now_text(services))
    await store_end(services, deployment)
    return deployment


async def claim(orchestrator: Orchestrator, deployment: Deployment) -> None:
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


def taken_over(deployment: Deployment, error: HistoryConflict) -> HistoryConflict:
    """Another deployer wrote this deployment while we ran it (`resume --force`, `abandon`):
    stop at once and record nothing more, since our events would interleave with theirs."""
    short = deployment.short_id
    return HistoryConflict(
        f"deployment {short}: another deployer took it over (it stored the next event first), "
        f"so this one stopped and recorded nothing more; `edeliver log {short}` shows who"
    )


async def record_interruption(
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


async def store_end(services: Services, deployment: Deployment) -> None:
    """Record the outcome and release the environment; if the store fails now, the nodes are
    done but the deployment is not ended: resume records its end."""
    patience, store = services.patience or Patience(), services.deployments.store
    try:
        await patiently(
            partial(in_thread, services.deployments.end, deployment),
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


async def end_refused(
    orchestrator: Orchestrator, services: Services, deployment: Deployment
) -> None:
    """End a deployment that never started rolling out (it was refused)."""
    await orchestrator.close()
    await in_thread(services.deployments.end, deployment)
