"""Ctrl-C mid-rollout: what was done is stored without holes, the interruption is recorded,
and `resume` finishes the deployment."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edeliver.core.deployment import Deployment
from edeliver.core.errors import DeploymentInterrupted
from edeliver.core.rollout import deploy
from tests.support.simulation import Simulation, artifact


async def _interrupt_after_steps(sim: Simulation, steps: int) -> None:
    sim.store.add(artifact("1.0.0"))
    deployments = sim.deployments()
    task = asyncio.create_task(deploy(sim.services(deployments), sim.config, "prod", "1.0.0"))
    while sum(1 for entry in sim.trace if entry[0] == "step") < steps:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(DeploymentInterrupted, match="edeliver resume"):
        await task
    deployments.close()


@pytest.mark.parametrize("steps", [1, 7, 15, 29])
def test_an_interrupted_deployment_is_stored_whole_and_resumes(tmp_path: Path, steps: int) -> None:
    sim = Simulation.create(tmp_path, 8, max_parallel=3)
    asyncio.run(_interrupt_after_steps(sim, steps))
    reader = sim.deployments()
    (row,) = reader.history()
    stored = reader.repository.get(reader.load(row.id).id)  # replays: no hole in the versions
    assert isinstance(stored, Deployment) and not stored.finished
    assert type(reader.events_of(stored.id)[-1]).__name__ == "Interrupted"
    reader.close()
    resumed = sim.resume()
    assert resumed.outcome == "succeeded"
    assert {host.running for host in sim.hosts.values()} == {"1.0.0"}
