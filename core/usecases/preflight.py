"""Before any node changes: every node locked and probed, the nodes checked uniform (DESIGN
§8), the before-rollout tasks run; a node that cannot take the rollout refuses it, recorded."""

from __future__ import annotations

import asyncio
import contextlib

from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.errors import EdeliverError, NodeError, RefusedError
from edeliver.core.domain.lifecycle import IN_FLIGHT, ROLLING_BACK
from edeliver.core.domain.model import Artifact, NodeFacts
from edeliver.core.domain.uniform import check_rollout
from edeliver.core.usecases.liveness import hold_every_node
from edeliver.core.usecases.orchestrator import Orchestrator
from edeliver.core.usecases.rollout_endings import end_refused
from edeliver.core.usecases.services import Services, now_text


async def checked_probes(
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
        deployment.refuse(str(error), now_text(services))
        await end_refused(orchestrator, services, deployment)
        raise


async def before_rollout(
    orchestrator: Orchestrator, deployment: Deployment, services: Services
) -> None:
    """The tasks that run before any node changes; a critical failure refuses the deployment."""
    try:
        await orchestrator.runner.before_rollout(orchestrator.shell)
    except RefusedError as error:
        deployment.refuse(str(error), now_text(services))
        await end_refused(orchestrator, services, deployment)
        raise


async def _probe(orchestrator: Orchestrator, node: str) -> NodeFacts:
    """A node that cannot be probed refuses the whole deployment, before anything changed."""
    try:
        return await (await orchestrator.shell(node)).probe()
    except NodeError as error:
        raise RefusedError(f"{error}; nothing was changed on any node") from error


async def reprobe_in_flight(orchestrator: Orchestrator, deployment: Deployment) -> None:
    """Ask each node that was mid-step what it runs now; recorded for the audit trail."""
    for node in deployment.nodes_in(*IN_FLIGHT, ROLLING_BACK):
        # An unreachable node is not an error here: its step will meet the same error and fail.
        with contextlib.suppress(NodeError):
            deployment.probed(node, (await (await orchestrator.shell(node)).probe()).as_dict())
