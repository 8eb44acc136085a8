"""Property tests of DESIGN §4: random environments, failure schedules, crashes and resumes.

One RuleBasedStateMachine per strategy × fallback. Each example builds an environment of 1-30
fake nodes, then deploys successive versions while faults are scheduled, the event store fails
at random writes (an ordinary exception, or a transient error that is retried) and the deployer
is "killed" after a random number of stored events; stopped deployments are resumed from the
stored events alone. After every deployment that ends, invariants 1-6 are checked against the
fake hosts (what they run) and against the event log (what was recorded, and in which order);
at every step, the stored events replay and each aggregate's were stored in version order.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from edeliver.adapters.events.event_store_faults import FailingAt, SimulatedCrash
from edeliver.adapters.node.fakes import FakeHost
from edeliver.core.domain.config import FALLBACKS, STRATEGIES
from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.errors import EdeliverError, EventStoreError
from tests.support.simulation import Simulation

FAULTY_STEPS = ("prepare", "install", "activate", "verify", "roll_back")
STORE_ERRORS = {
    "ordinary": lambda: RuntimeError("the event store broke"),
    "os": lambda: OSError(28, "No space left on device"),
    "transient": lambda: EventStoreError("event store: database is locked", transient=True),
}


class RolloutMachine(RuleBasedStateMachine):
    strategy = "one_for_all"
    fallback = "rollback"

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="edeliver-prop-"))
        self.version = 0
        self.interrupted = False
        self.before: dict[str, tuple[str | None, str | None]] = {}
        self.trace_start = 0

    def teardown(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    @initialize(data=st.data(), size=st.integers(1, 30))
    def environment(self, data: st.DataObject, size: int) -> None:
        max_parallel = data.draw(st.none() | st.integers(1, size), label="max_parallel")
        max_failures = data.draw(st.none() | st.integers(0, 3), label="max_failures")
        self.sim = Simulation.create(
            self.directory,
            size,
            strategy=self.strategy,
            fallback=self.fallback,
            max_parallel=max_parallel,
            max_failures=max_failures,
            in_memory=True,
        )
        self.nodes = list(self.sim.config.nodes)

    @precondition(lambda self: not self.interrupted)
    @rule(
        data=st.data(),
        step=st.sampled_from(FAULTY_STEPS),
        kind=st.sampled_from(("fail", "fail", "fail", "disconnect", "hang")),
    )
    def schedule_fault(self, data: st.DataObject, step: str, kind: Any) -> None:
        self.sim.faults.add(data.draw(st.sampled_from(self.nodes), label="node"), step, kind)

    @rule(at=st.integers(1, 80), kind=st.sampled_from(sorted(STORE_ERRORS)))
    def schedule_store_failure(self, at: int, kind: str) -> None:
        """The next deploy or resume meets a store that fails once, at the write that would
        store its `at`-th event (counted in events: the same run fails at the same point)."""
        self.sim.flaky = lambda save: FailingAt(save, at, STORE_ERRORS[kind])

    @precondition(lambda self: not self.interrupted)
    @rule(crash_after=st.none() | st.integers(0, 120))
    def deploy_next_version(self, crash_after: int | None) -> None:
        self.version += 1
        self.before = {n: (h.current, h.running) for n, h in self.sim.hosts.items()}
        self.trace_start = len(self.sim.trace)
        try:
            self._ended(self.sim.deploy(self._new(), crash_after))
        except (SimulatedCrash, EdeliverError):  # killed, or stopped by the failing store
            self.interrupted = True
        finally:
            self.sim.flaky = None

    @precondition(lambda self: self.interrupted)
    @rule(crash_after=st.none() | st.none() | st.integers(0, 60))
    def resume(self, crash_after: int | None) -> None:
        try:
            self._ended(self.sim.resume(crash_after))
        except (SimulatedCrash, EdeliverError):
            return
        finally:
            self.sim.flaky = None
        self.interrupted = False

    @invariant()
    def no_half_trees(self) -> None:
        """Invariant 1: `current` always names a complete release; what runs is what it names."""
        for name, host in self.sim.hosts.items():
            assert host.current is None or host.current in host.releases, name
            assert host.running in (None, host.current), name

    @invariant()
    def stored_in_order(self) -> None:
        """Each deployment's events are stored in version order with no version skipped: no
        hole, ever (`Started` is stored by `begin`, outside the trace, so the trace starts at 2)."""
        last: dict[object, int] = {}
        for entry in self.sim.trace:
            if entry[0] == "event":
                originator, version = entry[2]["originator_id"], entry[2]["originator_version"]
                assert version == last.get(originator, 1) + 1, (entry, last.get(originator))
                last[originator] = version

    # ---- after a deployment ends -------------------------------------------------------------

    def _new(self) -> str:
        return f"{self.version}.0.0"

    def _ended(self, live: Deployment) -> None:
        stored = self._replayed(live)
        self._replay_matches(live, stored)
        self._nodes_match_states(live)
        failed = self._failed_nodes(live)
        assert (live.outcome == "succeeded") == (not failed and not live.escalated), live.outcome
        if self.strategy == "one_for_all" and self.fallback == "rollback":
            self._all_or_nothing(live)
        if self.strategy == "rest_for_one" and self.fallback == "rollback" and not live.escalated:
            self._rest_rolled_back(live)
        if self.fallback == "stop":
            self._nothing_starts_in_scope()
        if self.strategy == "one_for_one" and not live.escalated:
            self._survivors_updated(live, failed)
        self.sim.faults.clear()

    def _replayed(self, live: Deployment) -> Deployment:
        deployments = self.sim.deployments()
        try:
            stored = deployments.repository.get(live.id)
            assert isinstance(stored, Deployment)
            self.stored_events = deployments.events_of(live.id)
            return stored
        finally:
            deployments.close()

    def _replay_matches(self, live: Deployment, stored: Deployment) -> None:
        """Invariant 6: the stored events replay to the live run's node states."""
        assert stored.states == live.states
        assert stored.outcome == live.outcome
        assert stored.pending_actions == live.pending_actions == {}

    def _nodes_match_states(self, live: Deployment) -> None:
        """Each node's final state says what the host runs."""
        for node, state in live.states.items():
            host, (current_before, _) = self.sim.hosts[node], self.before[node]
            if state == "updated":
                assert host.current == host.running == self._new(), (node, host)
            elif state in ("rolled_back", "skipped"):
                assert host.current == current_before, (node, state, host, current_before)
            elif state in ("halted", "failed"):
                assert host.current in (current_before, self._new()), (node, state, host)
            else:
                assert state == "rollback_failed", (node, state)

    def _failed_nodes(self, live: Deployment) -> set[str]:
        return {
            e.node
            for e in self.stored_events
            if type(e).__name__ == "NodeTransitioned" and e.trigger == "fail"
        }

    def _all_or_nothing(self, live: Deployment) -> None:
        """Invariant 2: one_for_all + rollback ends all new or all old."""
        if live.outcome == "succeeded":
            return
        for node, state in live.states.items():
            assert state in ("rolled_back", "skipped", "rollback_failed"), (node, state)

    def _rest_rolled_back(self, live: Deployment) -> None:
        """Invariant 3: nodes updated before the first failure stay new; the rest end old."""
        early: set[str] = set()
        for e in self.stored_events:
            name = type(e).__name__
            if name == "NodeTransitioned" and e.trigger == "fail":
                break
            if name == "NodeTransitioned" and e.dest == "updated":
                early.add(e.node)
        else:
            return  # no failure
        for node, state in live.states.items():
            if node in early:
                assert state == "updated", (node, state)
            else:
                assert state in ("rolled_back", "skipped", "rollback_failed"), (node, state)

    def _nothing_starts_in_scope(self) -> None:
        """Invariant 4: with stop, no step starts on a node in scope once the decision is stored."""
        doomed: set[str] = set()
        for entry in self.sim.trace[self.trace_start :]:
            if entry[0] == "event" and entry[1] == "FallbackDecided":
                doomed |= set(entry[2]["scope"])
            elif entry[0] == "step":
                assert entry[1] not in doomed, f"{entry} started after its node was in scope"

    def _survivors_updated(self, live: Deployment, failed: set[str]) -> None:
        """Invariant 5: under one_for_one every node that did not fail ends on the new release."""
        for node, state in live.states.items():
            if node not in failed:
                assert state == "updated", (node, state)


def machine_for(strategy: str, fallback: str) -> type[RolloutMachine]:
    return type(
        f"Rollout_{strategy}_{fallback}",
        (RolloutMachine,),
        {"strategy": strategy, "fallback": fallback},
    )


@pytest.mark.parametrize("fallback", FALLBACKS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_invariants_hold_for_every_failure_schedule(strategy: str, fallback: str) -> None:
    """DESIGN §4 invariants 1-6 hold for random environments, faults, crashes and resumes."""
    machine = machine_for(strategy, fallback)
    machine.TestCase.settings = settings(
        max_examples=settings().max_examples,  # the profile's: 300 in CI, 30 locally
        stateful_step_count=6,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    machine.TestCase().runTest()


def test_fake_host_defaults_are_an_empty_linux_node() -> None:
    """The simulated host starts with nothing installed and nothing running."""
    host = FakeHost()
    assert (host.current, host.running, host.releases) == (None, None, set())
