"""Ctrl-C mid-rollout: what was done is stored without holes, the interruption is recorded,
and `resume` finishes the deployment."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edeliver.adapters.events.event_store_faults import SimulatedCrash
from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.errors import DeploymentInterrupted, LockHeldError
from edeliver.core.ports import NodeLockHolder
from edeliver.core.usecases.rollout import deploy
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


def test_a_killed_deployer_is_resumed_at_once_since_no_node_is_locked_by_it(
    tmp_path: Path,
) -> None:
    """A deployer killed outright records nothing, but its connections drop and with them its
    nodes' locks: no heartbeat is alive, so `resume` needs no --force and no waiting."""
    sim = Simulation.create(tmp_path, 3, max_parallel=1, step_timeout=30)
    with pytest.raises(SimulatedCrash):
        sim.deploy("1.0.0", crash_after=9)
    sim.clock.current = datetime.now(UTC)  # its last event is a moment old
    assert sim.resume(force=False).outcome == "succeeded"


def test_a_deployer_still_holding_a_node_is_not_resumed_and_is_named(tmp_path: Path) -> None:
    """A node locked by the deployment (its deployer's heartbeat alive) refuses `resume`
    before anything changes; once the node is free, `resume` goes on."""
    sim = Simulation.create(tmp_path, 3, max_parallel=1, step_timeout=30)
    with pytest.raises(SimulatedCrash):
        sim.deploy("1.0.0", crash_after=9)
    before = {name: host.running for name, host in sim.hosts.items()}
    (deployment_id,) = {e[2]["originator_id"] for e in sim.trace if e[0] == "event"}
    live = NodeLockHolder("n1", str(deployment_id), "prod", "bob@ci", "2026-01-01T00:00:00Z", 2, 7)
    sim.hosts["n1"].lock = live
    with pytest.raises(
        LockHeldError, match=r"n1 is locked by deployment .* \(prod, deployer bob@ci"
    ):
        sim.resume(force=False)
    assert {name: host.running for name, host in sim.hosts.items()} == before
    assert "Resumed" not in _event_names(sim)
    assert sim.hosts["n1"].lock == live  # the refused resume left the live holder alone
    sim.hosts["n1"].lock = None  # its deployer ended
    assert sim.resume(force=False).outcome == "succeeded"


def test_the_event_clock_decides_only_when_no_node_can_be_asked(tmp_path: Path) -> None:
    """With no node reachable, a deployment that wrote an event a moment ago may have a live
    deployer: refused, with the time it may be resumed at."""
    sim = Simulation.create(tmp_path, 3, max_parallel=1, step_timeout=30)
    with pytest.raises(SimulatedCrash):
        sim.deploy("1.0.0", crash_after=9)
    for host in sim.hosts.values():
        host.reachable = False
    sim.clock.current = datetime.now(UTC)
    with pytest.raises(LockHeldError, match=r"may still be running; wait until .*--force"):
        sim.resume(force=False)


def test_a_deployer_that_recorded_its_interruption_is_resumed_at_once(tmp_path: Path) -> None:
    sim = Simulation.create(tmp_path, 3, max_parallel=1)
    asyncio.run(_interrupt_after_steps(sim, 4))
    sim.clock.current = datetime.now(UTC)
    assert sim.resume(force=False).outcome == "succeeded"


def _event_names(sim: Simulation) -> list[str]:
    reader = sim.deployments()
    try:
        (row,) = reader.history()
        return [type(e).__name__ for e in reader.events_of(reader.load(row.id).id)]
    finally:
        reader.close()
