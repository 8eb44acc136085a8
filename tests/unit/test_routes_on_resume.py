"""Upgrade mode on the fakes: each node's route and rollback target are recorded in the events,
and a resumed run (a new process, new shells) follows them instead of deciding again."""

from __future__ import annotations

from pathlib import Path

import pytest

from edeliver.adapters.events.event_store_faults import SimulatedCrash
from edeliver.adapters.node.fakes import FakeHost
from edeliver.cli.rollout_commands import routes_of
from edeliver.core.domain.model import Route
from tests.support.simulation import Simulation

OLD, NEW = "1.0.0", "2.0.0"
HOT = Route(True, f"hot upgrade from {OLD}", OLD, OLD, OLD)
FULL = Route(False, "full release: no VM answers on the node", OLD)


def _fleet(tmp_path: Path) -> Simulation:
    sim = Simulation.create(tmp_path, 3, max_parallel=1, step_timeout=5)
    for host in sim.hosts.values():
        host.releases, host.current, host.running = {OLD}, OLD, OLD
    # n2 was upgraded hot before: `current` names its 0.9.0 root, release_handler says 1.0.0.
    sim.hosts["n2"] = FakeHost(releases={"0.9.0", OLD}, current="0.9.0", running=OLD)
    sim.routes = {"n0": HOT, "n1": FULL, "n2": HOT}
    return sim


def _crash_once_two_nodes_are_activated(sim: Simulation) -> None:
    """Deploy until the deployer dies right after n1's activation is stored."""
    stored = 0
    for crash_after in range(1, 200):
        sim.trace.clear()
        _reset(sim)
        with pytest.raises(SimulatedCrash):
            sim.deploy(NEW, crash_after=crash_after)
        stored = sum(1 for e in sim.trace if e[0] == "event" and _activated(e[2], "n1"))
        if stored:
            return
    raise AssertionError("n1 was never activated")


def _activated(event: dict[str, object], node: str) -> bool:
    return event.get("node") == node and event.get("trigger") == "activated"


def _reset(sim: Simulation) -> None:
    sim.db.unlink(missing_ok=True)
    for name, host in sim.hosts.items():
        root = "0.9.0" if name == "n2" else OLD
        host.releases = {root, OLD}
        host.current, host.running, host.uploads, host.previous = root, OLD, set(), None


def test_a_resumed_run_rolls_each_node_back_by_the_route_it_recorded(tmp_path: Path) -> None:
    """The new process's shells would now decide other routes: the recorded ones win (n2 had
    not started: it decides its route in the resumed run)."""
    sim = _fleet(tmp_path)
    _crash_once_two_nodes_are_activated(sim)
    sim.trace.clear()
    sim.routes = {"n0": FULL, "n1": HOT, "n2": FULL}  # what the nodes would answer by now
    sim.faults.add("n2", "verify")

    ended = sim.resume()

    assert set(ended.states.values()) == {"rolled_back"}
    taken = {e[1]: e[2] for e in sim.trace if e[0] == "take_route"}
    assert taken == {"n0": HOT.why, "n1": FULL.why}
    rolled = {e[1]: (e[2], e[3]) for e in sim.trace if e[0] == "rolled_back_by"}
    assert rolled == {"n0": (HOT.why, OLD), "n1": (FULL.why, OLD), "n2": (FULL.why, OLD)}
    assert {name: host.running for name, host in sim.hosts.items()} == dict.fromkeys(sim.hosts, OLD)


def test_a_node_rolls_back_to_the_target_its_route_reported_not_to_its_root(
    tmp_path: Path,
) -> None:
    """n2's `current` is the 0.9.0 root it was upgraded in hot; release_handler said 1.0.0."""
    sim = _fleet(tmp_path)
    sim.faults.add("n2", "verify")

    ended = sim.deploy(NEW)

    assert ended.previous["n2"] == "0.9.0" and ended.rollback_target("n2") == OLD
    assert sim.hosts["n2"].running == OLD


def test_the_routes_the_report_shows_are_read_back_from_the_stored_events(
    tmp_path: Path,
) -> None:
    """A fresh load of the deployment (another process) knows every node's route and target."""
    sim = _fleet(tmp_path)
    sim.deploy(NEW)

    reader = sim.deployments()
    try:
        (row,) = reader.history()
        loaded = reader.load(row.id)
    finally:
        reader.close()

    assert routes_of(loaded) == {"n0": HOT.why, "n1": FULL.why, "n2": HOT.why}
    assert loaded.route_of("n1") == FULL
    assert {n: loaded.rollback_target(n) for n in loaded.order} == dict.fromkeys(loaded.order, OLD)
