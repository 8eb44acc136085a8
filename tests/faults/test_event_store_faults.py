"""The event store failing during real deployments (`python -m edeliver.cli`) to real sshd nodes.

SQLite held by another process (BEGIN EXCLUSIVE) for 15 s and for good, SQLite on a disk that
fills and frees, PostgreSQL stopped mid-deploy and started again, two `resume` at once, and the
deployer SIGKILLed during a fallback rollback. After each, the nodes are asked what they run and
where `current` points, the deployment's events load, and no environment is left locked.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faults_journal import (
    BROKEN,
    GOOD,
    NEXT,
    Project,
    fill,
    one_line,
    small_tmpfs,
    sqlite_held,
    start_project,
)
from tests.support.postgres import PostgresServer


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """3 real nodes shared by the module; each test picks its own event store."""
    project, fleet = start_project(tmp_path_factory.mktemp("store-faults"))
    try:
        yield project
    finally:
        fleet.stop()


@pytest.fixture(autouse=True)
def no_deployer_left(project: Project) -> Iterator[None]:
    """Whatever a test asserted, no deployer it started runs on into the next one."""
    yield
    project.stop_deployers()


@pytest.fixture
def sqlite(project: Project, tmp_path: Path) -> Iterator[Path]:
    """A fresh SQLite event store for one test; nodes start on 0.1.0."""
    db = tmp_path / "events.db"
    project.events, project.patience = f"sqlite://{db}", ""
    project.ensure_all_on(GOOD)
    yield db
    project.events = project.patience = ""


def test_sqlite_held_by_another_process_for_15s_only_delays_the_deploy(
    project: Project, sqlite: Path
) -> None:
    """BEGIN EXCLUSIVE elsewhere for 15 s: the write waits, fails "locked", is retried, and the
    deployment goes on to succeed; the deployer said once that it was retrying."""
    deploying = project.start("deploy", "waves", "--version", NEXT)
    deployment = project.wait_for("node1", "activating")
    with sqlite_held(sqlite, 15):
        deploying.wait_until_it_says("database is locked; trying again")
        assert deploying.process.poll() is None  # it cannot end without writing
    code, _, said = deploying.finish()
    assert code == 0, said
    project.assert_whole(NEXT, deployment)
    assert project.log(deployment)[-1]["outcome"] == "succeeded"


def test_sqlite_on_a_disk_that_fills_and_frees_loses_no_event(
    project: Project, tmp_path: Path
) -> None:
    """The disk of the events db fills mid-deploy ("database or disk is full") and is freed:
    retried, nothing lost, no hole, the deployment succeeds."""
    project.ensure_all_on(GOOD)
    with small_tmpfs(tmp_path / "disk") as disk:
        project.events = f"sqlite://{disk / 'events.db'}"
        try:
            deploying = project.start("deploy", "waves", "--version", NEXT)
            deployment = project.wait_for("node1", "installing")
            filler = fill(disk)
            deploying.wait_until_it_says("full; trying again")
            filler.unlink()
            code, _, said = deploying.finish()
            assert code == 0, said
            seqs = [e["seq"] for e in project.log(deployment)]
            assert seqs == list(range(1, len(seqs) + 1))
            project.assert_whole(NEXT, deployment)
        finally:
            project.events = ""


def test_sqlite_locked_for_good_stops_the_rollout_and_resume_finishes_it(
    project: Project, sqlite: Path
) -> None:
    """The store stays locked past the patience: nodes end their step, nothing further starts,
    exit 4 with one line naming the store and the command that works (no interruption could
    be stored, but the nodes say the deployer is gone); once it is free, the log loads and
    that plain `resume` finishes the deployment."""
    project.patience = "3"
    deploying = project.start("deploy", "waves", "--version", NEXT)
    deployment = project.wait_for("node2", "installing")
    with sqlite_held(sqlite, None):
        code, _, said = deploying.finish()
    last = one_line(said)
    assert code == 4, said
    assert f"stopped, nothing further started: event store {sqlite}: " in last
    assert f"`edeliver resume {deployment[:8]}` (with `--force`" in last, last
    events = project.log(deployment)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert not any(e["event"] == "FallbackDecided" for e in events)  # no rollback for it
    assert "node3" not in {e.get("node") for e in events if e["event"] == "NodeTransitioned"}
    resumed = project.edeliver("resume", deployment[:8])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    project.assert_whole(NEXT, deployment)


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server this module may stop and start (the session's one is shared)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_postgresql_stopped_mid_deploy_then_started_and_resumed(
    project: Project, own_postgres: PostgresServer
) -> None:
    """The PostgreSQL server dies mid-deploy: exit 4 in one line naming the store without a
    password, naming the plain `resume` that will work; started again, the log loads and it
    finishes the deployment."""
    project.events, project.patience = own_postgres.new_database(), "3"
    try:
        project.ensure_all_on(GOOD)
        deploying = project.start("deploy", "waves", "--version", NEXT)
        deployment = project.wait_for("node2", "preparing")
        own_postgres.crash()
        try:
            code, _, said = deploying.finish()
        finally:
            own_postgres.run()
        last = one_line(said)
        assert code == 4, said
        assert f"event store {project.events}: " in last, last
        assert f"`edeliver resume {deployment[:8]}`" in last, last
        events = project.log(deployment)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        resumed = project.edeliver("resume")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        project.assert_whole(NEXT, deployment)
    finally:
        project.events = project.patience = ""


def test_two_resumes_at_once_one_finishes_and_the_other_is_refused(
    project: Project, sqlite: Path
) -> None:
    """After a SIGTERM (interruption recorded), two `resume` start together: one finishes the
    deployment, the other is refused in one line with exit 3 and touches nothing."""
    deploying = project.start("deploy", "waves", "--version", NEXT)
    deployment = project.wait_for("node2", "installing")
    deploying.process.send_signal(signal.SIGTERM)
    code, _, said = deploying.finish()
    assert code == 4 and one_line(said).endswith(f"`edeliver resume {deployment[:8]}`"), said
    first, second = project.start("resume"), project.start("resume")
    outcomes = sorted([first.finish(), second.finish()])
    (won, _, _), (lost, _, lost_said) = outcomes
    assert (won, lost) == (0, 3), outcomes
    assert len(lost_said.strip().splitlines()) == 1 and deployment[:8] in lost_said, lost_said
    events = project.log(deployment)
    assert [e["event"] for e in events].count("Resumed") == 1
    project.assert_whole(NEXT, deployment)


def test_a_deployer_killed_during_a_fallback_rollback_is_resumed_to_the_old_release(
    project: Project, sqlite: Path
) -> None:
    """0.3.0 never boots; one_for_all + rollback; SIGKILL while nodes roll back; `resume
    --force` finishes the rollback: every node back on 0.1.0, the deployment failed and ended."""
    deploying = project.start("deploy", "all", "--version", BROKEN)
    deployment = project.wait_for_any("rolling_back")
    deploying.process.send_signal(signal.SIGKILL)
    code, _, _ = deploying.finish()
    assert code == -signal.SIGKILL
    resumed = project.edeliver("resume", "--force", "--json")
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert {n["state"] for n in summary["nodes"].values()} <= {"rolled_back", "skipped"}
    project.assert_whole(GOOD, deployment)
