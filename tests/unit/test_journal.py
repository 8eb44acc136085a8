"""A failing event store never leaves a hole, a locked environment or a traceback.

On the in-memory fakes with a real SQLite event store: the store fails once, for a while or for
good (a `FlakySave`), and the rollout retries, or stops the way an interruption does and is
resumed; two resumes race; a deployment's stored history is damaged by hand.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edeliver.adapters.events.event_store_faults import FlakySave
from edeliver.cli.main import Runtime, app
from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.errors import (
    DeploymentInterrupted,
    EdeliverError,
    EventStoreError,
    HistoryConflict,
)
from edeliver.core.usecases.journal import Patience
from edeliver.core.usecases.rollout import resume
from tests.support.simulation import Simulation, config_text


def locked() -> Exception:
    return EventStoreError("event store events.db: database is locked", transient=True)


def failing(writes: range | set[int], error: Callable[[], Exception]) -> Any:
    return lambda save: FlakySave(save, writes, error)


def stored_versions_and_names(sim: Simulation) -> tuple[list[int], list[str]]:
    reader = sim.deployments()
    try:
        (row,) = reader.history()
        events = reader.events_of(reader.load(row.id).id)  # replays: raises on a hole
        return [e.originator_version for e in events], [type(e).__name__ for e in events]
    finally:
        reader.close()


def no_hole(versions: list[int]) -> bool:
    return versions == list(range(1, len(versions) + 1))


@pytest.mark.parametrize("writes", [{3}, range(3, 9)], ids=["once", "for_a_while"])
def test_a_store_failing_transiently_is_retried_and_the_deployment_succeeds(
    tmp_path: Path, writes: range | set[int]
) -> None:
    """Transient store errors are retried with backoff, saying so once per streak: nothing
    lost, nothing out of order."""
    sim = Simulation.create(tmp_path, 4, max_parallel=2)
    sim.flaky = failing(writes, locked)
    assert sim.deploy("1.0.0").outcome == "succeeded"
    assert sim.warnings == ["event store events.db: database is locked; trying again for up to 30s"]
    versions, _ = stored_versions_and_names(sim)
    assert no_hole(versions)
    assert {host.running for host in sim.hosts.values()} == {"1.0.0"}


def test_a_lasting_store_failure_stops_the_rollout_resumably_with_one_line(
    tmp_path: Path,
) -> None:
    """An error that is not transient stops the rollout: no rollback starts because of it, the
    held events and the interruption are stored at the end, and plain `resume` finishes it."""
    sim = Simulation.create(tmp_path, 4, max_parallel=2)
    sim.flaky = failing({6}, lambda: RuntimeError("disk I/O error"))
    with pytest.raises(DeploymentInterrupted) as interrupted:
        sim.deploy("1.0.0")
    message = str(interrupted.value)
    assert "\n" not in message and "RuntimeError: disk I/O error" in message
    assert "nothing further started" in message and message.endswith("`")
    assert "--force" not in message and "edeliver resume" in message
    versions, names = stored_versions_and_names(sim)
    assert no_hole(versions) and names[-1] == "Interrupted"
    assert "FallbackDecided" not in names
    sim.flaky = None
    sim.clock.current = datetime.now(UTC)
    assert sim.resume(force=False).outcome == "succeeded"
    assert {host.running for host in sim.hosts.values()} == {"1.0.0"}


def test_a_store_failing_before_any_node_changes_stops_resumably(tmp_path: Path) -> None:
    """The first write (the probes, before any node changes) fails for good: exit 4 like an
    interruption, never an error that leaves the environment locked with no way on."""
    sim = Simulation.create(tmp_path, 3)
    sim.flaky = failing({1}, lambda: OSError(30, "Read-only file system"))
    with pytest.raises(DeploymentInterrupted, match=r"stopped: .*Read-only file system"):
        sim.deploy("1.0.0")
    assert {host.running for host in sim.hosts.values()} == {None}
    sim.flaky = None
    assert sim.resume().outcome == "succeeded"


def test_a_store_down_for_good_says_resume_needs_force_once_it_is_back(tmp_path: Path) -> None:
    """If not even the interruption can be stored, the hint is the command that will work:
    plain `resume` (the nodes say no deployer holds them), `--force` only where no node can be
    asked; and nothing is lost."""
    sim = Simulation.create(tmp_path, 4, max_parallel=2)
    sim.patience = Patience(total=0.5, first=0.001)
    sim.flaky = failing(range(5, 10**9), locked)
    with pytest.raises(DeploymentInterrupted) as interrupted:
        sim.deploy("1.0.0")
    message = str(interrupted.value)
    assert "database is locked (still after retrying for 0.5s)" in message
    assert "could not be recorded either" in message
    assert message.endswith("(with `--force` if none of its nodes can be reached)")
    versions, names = stored_versions_and_names(sim)
    assert no_hole(versions) and "Interrupted" not in names
    sim.flaky = None
    sim.clock.current = datetime.now(UTC)
    assert sim.resume(force=False).outcome == "succeeded"
    assert {host.running for host in sim.hosts.values()} == {"1.0.0"}


def test_of_two_resumes_at_once_one_wins_and_the_other_is_refused(tmp_path: Path) -> None:
    """Optimistic concurrency: two resumes never interleave two histories in one deployment."""
    sim = Simulation.create(tmp_path, 3, max_parallel=1)
    sim.flaky = failing({4}, lambda: RuntimeError("boom"))
    with pytest.raises(DeploymentInterrupted):
        sim.deploy("1.0.0")
    sim.flaky = None
    outcomes = asyncio.run(_two_resumes(sim))
    won = [o for o in outcomes if isinstance(o, Deployment)]
    refused = [o for o in outcomes if isinstance(o, EdeliverError)]
    assert len(won) == 1 and won[0].outcome == "succeeded"
    assert len(refused) == 1 and refused[0].exit_code == 3, refused
    assert "\n" not in str(refused[0])
    versions, names = stored_versions_and_names(sim)
    assert no_hole(versions) and names.count("Resumed") == 1
    assert {host.running for host in sim.hosts.values()} == {"1.0.0"}


def test_a_deployer_whose_deployment_is_abandoned_meanwhile_stops_and_records_nothing(
    tmp_path: Path,
) -> None:
    """Another operator abandons the deployment while its deployer runs: the deployer's next
    write conflicts, so it stops (exit 3) and nothing of it lands after `Abandoned`."""
    sim = Simulation.create(tmp_path, 3, max_parallel=1)

    def abandoned_at_third_write(save: Any) -> Any:
        writes = iter(range(1, 10**9))

        def write(events: Any) -> None:
            if next(writes) == 3:
                other = sim.deployments()
                taken = other.load(other.history()[0].id)
                other.abandon(taken, "taking over", "bob@laptop", "2026-01-01T00:00:00+00:00")
                other.close()
            save(events)

        return write

    sim.flaky = abandoned_at_third_write
    with pytest.raises(HistoryConflict, match="another deployer took it over") as stopped:
        sim.deploy("1.0.0")
    assert stopped.value.exit_code == 3
    _, names = stored_versions_and_names(sim)
    assert names[-1] == "Abandoned"
    sim.flaky = None
    assert sim.deploy("2.0.0").outcome == "succeeded"  # the environment was released


async def _two_resumes(sim: Simulation) -> list[object]:
    apps = [sim.deployments(), sim.deployments()]
    try:
        runs = [resume(sim.services(app), sim.config, None, force=False) for app in apps]
        return list(await asyncio.gather(*runs, return_exceptions=True))
    finally:
        for app in apps:
            app.close()


def test_the_journal_stores_in_order_when_writes_fail_at_random(tmp_path: Path) -> None:
    """Whatever writes fail, the stored versions follow the order the events were recorded."""
    sim = Simulation.create(tmp_path, 6, max_parallel=3)
    sim.flaky = failing({2, 3, 5, 8, 13}, locked)
    assert sim.deploy("1.0.0").outcome == "succeeded"
    stored = [e for e in sim.trace if e[0] == "event" and "originator_version" in e[2]]
    assert [e[2]["originator_version"] for e in stored] == list(range(2, len(stored) + 2))


def damage(db: Path, sql: str) -> None:
    """Change the stored history of the only deployment by hand."""
    with sqlite3.connect(db) as connection:
        deployment = connection.execute(
            "SELECT originator_id FROM stored_events WHERE topic LIKE '%Deployment.Started'"
        ).fetchone()[0]
        connection.execute(sql, (deployment,))


def interrupted_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Simulation:
    """A project whose one deployment stopped midway, its events in .deliver/events.db."""
    monkeypatch.delenv("EDELIVER_EVENTS", raising=False)
    (tmp_path / ".deliver").mkdir()
    (tmp_path / ".deliver/edeliver.toml").write_text(config_text(3))
    sim = Simulation.create(tmp_path / ".deliver", 3, max_parallel=1)
    sim.flaky = failing({6}, lambda: RuntimeError("boom"))
    with pytest.raises(DeploymentInterrupted):
        sim.deploy("1.0.0")
    sim.flaky = None
    return sim


def cli(project: Path, *args: str) -> Any:
    return CliRunner().invoke(app, list(args), obj=Runtime(project=project))


@pytest.mark.parametrize(
    ("sql", "flag"),
    [
        ("DELETE FROM stored_events WHERE originator_id = ? AND originator_version = 4",
         "version 4 missing"),
        ("UPDATE stored_events SET state = x'7b7b' WHERE originator_id = ? "
         "AND originator_version = 3", "version 3 does not decode"),
    ],
    ids=["a_hole", "an_undecodable_event"],
)  # fmt: skip
def test_a_damaged_history_still_logs_and_is_abandoned_with_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sql: str, flag: str
) -> None:
    """`log` prints what is there and flags the damage; `resume` and plain `abandon` refuse in
    one line naming `--force`; `abandon --force` records why and frees the environment."""
    sim = interrupted_project(tmp_path, monkeypatch)
    damage(sim.db, sql)
    logged = cli(tmp_path, "log")
    assert logged.exit_code == 1
    assert f"!! {flag}" in logged.stdout and "Interrupted" in logged.stdout
    assert [flag in line for line in logged.stderr.splitlines()] == [True]
    short = sim.deployments().history()[0].id[:8]
    for refused in (cli(tmp_path, "resume"), cli(tmp_path, "abandon", short, "--reason", "x")):
        assert refused.exit_code == 1 and "Traceback" not in refused.output
        assert f"abandon {short} --force" in refused.stderr
        assert len(refused.stderr.splitlines()) == 1
    abandoned = cli(tmp_path, "abandon", short, "--reason", "disk died", "--force")
    assert abandoned.exit_code == 0, abandoned.output
    history = cli(tmp_path, "history", "--json")
    assert '"outcome": "abandoned"' in history.stdout
    assert "disk died (history damaged:" in cli(tmp_path, "log", short).stdout
    assert sim.deploy("2.0.0").outcome == "succeeded"  # the environment is free


def test_store_errors_reach_the_user_as_one_line_naming_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that cannot be read (a file that is not a database) is one line, exit 1."""
    monkeypatch.delenv("EDELIVER_EVENTS", raising=False)
    (tmp_path / ".deliver").mkdir()
    (tmp_path / ".deliver/events.db").write_text("not a database" * 100)
    result = cli(tmp_path, "history")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"edeliver: event store {tmp_path}/.deliver/events.db")
    assert len(result.stderr.splitlines()) == 1
