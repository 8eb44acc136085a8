"""The event store contract, run on SQLite, on a real PostgreSQL server and on the in-memory
(POPO) recorder the simulations use.

One suite, subclassed per backend (the eventsourcing project's own persistence tests are the
model): whatever the backend, deployments replay to what was recorded, the environment lock
admits one deployment at a time even under a race, and the audit queries agree.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.popo import POPOApplicationRecorder

from edeliver.adapters.events.event_store import open_deployments
from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.environment_lock import EnvironmentLock
from edeliver.core.domain.errors import LockHeldError, NotFoundError, UsageError
from edeliver.core.usecases.service import Deployments
from tests.support.postgres import PostgresServer
from tests.support.simulation import SharedRecorderDeployments


def new_deployment(
    environment: str = "prod", version: str = "1.0.0", by: str = "ann@laptop"
) -> Deployment:
    return Deployment(
        deployment_id=str(uuid.uuid4()),
        app="hello",
        environment=environment,
        version=version,
        mode="release",
        policy={"strategy": "one_for_all", "fallback": "rollback"},
        order=["web1", "web2"],
        batches=[["web1", "web2"]],
        started_by=by,
        started_at="2026-03-01T10:00:00+00:00",
    )


def renamed_topic(topic: str, moved: Mapping[str, str]) -> str:
    for now, before in moved.items():
        if topic.startswith(now):
            return before + topic.removeprefix(now)
    return topic


# What each event carries since its class_version 2, which version 1 did not.
VERSION_2_FIELDS = {
    "NodeProbed": ("first",),
    "NodeTransitioned": ("reason", "awaits_decision", "clears_pending"),
    "FallbackDecided": ("failures", "any_escalated", "added"),
}


def in_version_1_shape(store: Deployments, stored: StoredEvent) -> StoredEvent:
    """The stored event as version 1 wrote it: no class_version, none of version 2's fields."""
    added = VERSION_2_FIELDS.get(stored.topic.rpartition(".")[2])
    if added is None:
        return stored
    transcoder = store.mapper.transcoder
    state = transcoder.decode(stored.state)
    assert state.pop("class_version") == 2
    for field in added:
        del state[field]
    return replace(stored, state=transcoder.encode(state))


def aggregate_state(deployment: Deployment) -> dict[str, object]:
    return {k: v for k, v in vars(deployment).items() if k != "_pending_events"}


class EventStoreContract:
    """What every event store backend must do."""

    def open(self) -> Deployments:
        raise NotImplementedError

    @pytest.fixture
    def store(self) -> Iterator[Deployments]:
        app = self.open()
        yield app
        app.close()

    def test_a_deployment_replays_to_what_was_recorded(self, store: Deployments) -> None:
        """Node transitions, probes and the outcome come back from the stored events."""
        deployment = new_deployment()
        store.begin(deployment)
        deployment.probed("web1", {"current_version": "0.9.0"})
        deployment.transition("web1", "start")
        deployment.fail("web1", "prepare", "disk full")
        assert deployment.carry_out_due_actions() == ["web1"]
        store.save(deployment)
        reader = self.open()
        again = reader.repository.get(deployment.id)
        reader.close()
        assert isinstance(again, Deployment)
        assert again.states == {"web1": "rolling_back", "web2": "skipped"}
        assert again.previous == {"web1": "0.9.0"}
        assert again.reasons["web1"] == "prepare: disk full"
        assert again.pending_actions == {}

    def test_events_stored_under_the_modules_earlier_names_still_replay(
        self, store: Deployments
    ) -> None:
        """Topics name a class's module; a log written before the core's modules moved (to
        core/domain/) replays to the same deployment and lock."""
        deployment = new_deployment()
        store.begin(deployment)
        deployment.transition("web1", "start")
        store.save(deployment)
        moved = {
            "edeliver.core.domain.deployment:": "edeliver.core.deployment:",
            "edeliver.core.domain.environment_lock:": "edeliver.core.service:",
        }
        stored = store.recorder.select_events(deployment.id)
        renamed = [replace(e, topic=renamed_topic(e.topic, moved)) for e in stored]
        assert [e.topic for e in renamed] != [e.topic for e in stored]
        events = [store.mapper.to_domain_event(e) for e in renamed]
        assert [type(e) for e in events] == [type(store.mapper.to_domain_event(e)) for e in stored]
        lock_id = EnvironmentLock.create_id("hello", "prod")
        lock_events = store.recorder.select_events(lock_id)
        old_lock = [replace(e, topic=renamed_topic(e.topic, moved)) for e in lock_events]
        assert all(e.topic.startswith("edeliver.core.service:") for e in old_lock)
        assert [type(store.mapper.to_domain_event(e)).__qualname__ for e in old_lock] == [
            "EnvironmentLock.Registered",
            "EnvironmentLock.Locked",
        ]

    def test_events_stored_in_their_version_1_shape_replay_to_the_same_state(
        self, store: Deployments
    ) -> None:
        """Probes, transitions and decisions written before their events carried what they
        change (class_version 1) replay to the deployment the new events record."""
        deployment = new_deployment()
        store.begin(deployment)
        deployment.probed("web1", {"current_version": "0.9.0"})
        deployment.probed("web1", {"current_version": "1.0.0"})  # only the first one counts
        deployment.probed("web2", {})
        deployment.transition("web1", "start")
        deployment.fail("web1", "prepare", "disk full")
        assert deployment.carry_out_due_actions() == ["web1"]
        deployment.transition("web1", "rollback_failed", "no release 0.9.0")
        store.save(deployment)
        stored = store.recorder.select_events(deployment.id)
        old = [in_version_1_shape(store, e) for e in stored]
        reshaped = sum(e.state != o.state for e, o in zip(stored, old, strict=True))
        assert reshaped == 3 + 5 + 1  # probes, transitions (two carry out actions), decision
        replayed = None
        for domain_event in [store.mapper.to_domain_event(e) for e in old]:
            replayed = domain_event.mutate(replayed)
        assert isinstance(replayed, Deployment)
        assert aggregate_state(replayed) == aggregate_state(deployment)
        assert replayed.previous == {"web1": "0.9.0", "web2": None}
        assert replayed.reasons["web1"] == (
            "rollback failed: no release 0.9.0; before: prepare: disk full"
        )
        assert (replayed.failures, replayed.undecided, replayed.pending_actions) == (1, [], {})

    def test_a_second_deployment_to_a_locked_environment_is_refused(
        self, store: Deployments
    ) -> None:
        """The refusal names the holder and since when (exit 3)."""
        store.begin(new_deployment(by="ann@laptop"))
        other = self.open()
        expected = r"locked by deployment \w{8} \(ann@laptop\) since 2026-03-01T10:00"
        with pytest.raises(LockHeldError, match=expected) as refused:
            other.begin(new_deployment(by="bob@ci"))
        other.close()
        assert refused.value.exit_code == 3

    def test_other_environments_are_not_locked(self, store: Deployments) -> None:
        store.begin(new_deployment("prod"))
        store.begin(new_deployment("staging"))
        assert len(store.unfinished()) == 2

    def test_ending_a_deployment_releases_the_lock(self, store: Deployments) -> None:
        first = new_deployment()
        store.begin(first)
        first.transition("web1", "skip")
        first.transition("web2", "skip")
        first.finish("2026-03-01T10:05:00+00:00")
        store.end(first)
        second = new_deployment(version="1.0.1")
        other = self.open()
        other.begin(second)
        other.close()
        assert store.lock_holder("hello", "prod") == str(second.id)

    def test_racing_deployers_get_one_lock(self, store: Deployments) -> None:
        """Eight deployers starting at once on separate connections: exactly one wins."""
        apps = [self.open() for _ in range(8)]
        outcomes: list[str] = []
        barrier = threading.Barrier(len(apps), timeout=30)

        def race(app: Deployments) -> None:
            barrier.wait()
            try:
                app.begin(new_deployment())
                outcomes.append("won")
            except LockHeldError:
                outcomes.append("refused")

        threads = [threading.Thread(target=race, args=(app,)) for app in apps]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for app in apps:
            app.close()
        assert sorted(outcomes) == ["refused"] * 7 + ["won"]
        assert len(store.unfinished("prod")) == 1

    def test_abandon_releases_the_lock_and_records_why(self, store: Deployments) -> None:
        deployment = new_deployment()
        store.begin(deployment)
        store.abandon(
            deployment, "node web2 was decommissioned", "ann@laptop", "2026-03-02T09:00:00"
        )
        (row,) = store.history()
        assert row.outcome == "abandoned" and row.ended_at == "2026-03-02T09:00:00"
        assert store.lock_holder("hello", "prod") is None
        with pytest.raises(UsageError, match="already ended"):
            store.abandon(store.load(row.id), "again", "ann@laptop", "2026-03-02T09:01:00")

    def test_history_lists_every_deployment_in_order(self, store: Deployments) -> None:
        for version in ("1", "2", "3"):
            deployment = new_deployment(version=version)
            store.begin(deployment)
            store.abandon(deployment, "test", "ann", "t")
        store.begin(new_deployment("staging", version="4"))
        rows = store.history()
        assert [r.version for r in rows] == ["1", "2", "3", "4"]
        assert [r.outcome for r in rows] == ["abandoned"] * 3 + [None]
        assert store.latest("prod").release == "3"

    def test_deployments_are_found_by_id_prefix(self, store: Deployments) -> None:
        deployment = new_deployment()
        store.begin(deployment)
        assert store.load(str(deployment.id)[:8]).id == deployment.id
        with pytest.raises(NotFoundError, match="matches no deployment"):
            store.load("zzzzzzzz")

    def test_events_of_a_deployment_come_in_order(self, store: Deployments) -> None:
        deployment = new_deployment()
        store.begin(deployment)
        deployment.transition("web1", "start")
        deployment.transition("web1", "prepared")
        store.save(deployment)
        names = [type(e).__name__ for e in store.events_of(deployment.id)]
        assert names == ["Started", "NodeTransitioned", "NodeTransitioned"]
        assert [e.originator_version for e in store.events_of(deployment.id, after=2)] == [3]


class TestSQLite(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path

    def open(self) -> Deployments:
        return open_deployments(self.directory, "")


class TestPostgreSQL(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _database(self, postgres: PostgresServer) -> None:
        self.url = postgres.new_database()

    def open(self) -> Deployments:
        return open_deployments(Path("."), self.url)


class TestInMemory(EventStoreContract):
    """Every `open()` is another deployer on one recorder, as the simulations share it."""

    @pytest.fixture(autouse=True)
    def _recorder(self) -> None:
        self.recorder = POPOApplicationRecorder()

    def open(self) -> Deployments:
        return SharedRecorderDeployments(self.recorder)
