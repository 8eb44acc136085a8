"""`releases prune`: the newest N stay, and so does every version a node runs or returns to."""

from __future__ import annotations

from pathlib import Path

import pytest

from edeliver.adapters.node.fakes import FakeHost
from edeliver.adapters.store.memory_store import InMemoryReleaseStore
from edeliver.core.domain.errors import UsageError
from edeliver.core.domain.model import NodeFacts
from edeliver.core.usecases.retention import plan_prune
from tests.support.cli_world import World
from tests.support.simulation import artifact

VERSIONS = ["1.0.0", "2.0.0", "3.0.0", "4.0.0", "5.0.0"]


@pytest.mark.parametrize(
    ("keep", "facts", "removed"),
    [
        (2, {}, ("1.0.0", "2.0.0", "3.0.0")),
        (5, {}, ()),
        (
            1,
            {"a": NodeFacts(running_version="2.0.0", current_version="2.0.0")},
            ("1.0.0", "3.0.0", "4.0.0"),
        ),
        (
            1,
            {"a": NodeFacts(current_version="3.0.0", previous_version="1.0.0")},
            ("2.0.0", "4.0.0"),
        ),
        (
            1,
            {"a": NodeFacts(running_version="1.0.0"), "b": NodeFacts(running_version="4.0.0")},
            ("2.0.0", "3.0.0"),
        ),
    ],
)
def test_prune_removes_only_old_versions_no_node_needs(
    keep: int, facts: dict[str, NodeFacts], removed: tuple[str, ...]
) -> None:
    assert plan_prune(VERSIONS, keep, facts).removed == removed


def test_every_kept_version_says_why() -> None:
    facts = {
        "web1": NodeFacts(
            running_version="2.0.0", current_version="2.0.0", previous_version="1.0.0"
        )
    }
    kept = plan_prune(VERSIONS, 1, facts).kept
    assert kept == {
        "1.0.0": "the rollback target on web1",
        "2.0.0": "running on web1",
        "5.0.0": "one of the 1 newest",
    }


def test_keep_must_be_positive() -> None:
    with pytest.raises(UsageError, match="--keep must be at least 1"):
        plan_prune(VERSIONS, 0, {})


@pytest.fixture
def world(tmp_path: Path) -> World:
    found = World(tmp_path)
    found.store = InMemoryReleaseStore([artifact(v) for v in VERSIONS])
    return found


def test_the_prune_command_keeps_what_runs_on_any_node_and_its_rollback_target(
    world: World,
) -> None:
    """3.0.0 then 4.0.0 deployed: 4.0.0 runs, 3.0.0 is the rollback target; --keep 1 keeps 5.0.0."""
    for version in ("3.0.0", "4.0.0"):
        assert world.run("deploy", "prod", "--version", version).exit_code == 0
    result = world.run("releases", "prune", "--keep", "1")
    assert result.exit_code == 0, result.output
    assert list(world.store.artifacts) == [("hello", v) for v in ("3.0.0", "4.0.0", "5.0.0")]
    assert (
        "removed      1.0.0" in result.output
        and "kept         3.0.0  (the rollback target on n0)" in result.output
    )


def test_an_unreachable_node_refuses_the_prune_and_removes_nothing(world: World) -> None:
    world.hosts["n2"] = FakeHost(reachable=False)
    result = world.run("releases", "prune", "--keep", "1")
    assert result.exit_code == 3
    assert "cannot tell what n2 runs, so nothing was removed" in result.stderr
    assert len(world.store.artifacts) == len(VERSIONS)


def test_a_dry_run_removes_nothing(world: World) -> None:
    result = world.run("releases", "prune", "--keep", "2", "--dry-run", "--json")
    assert result.exit_code == 0
    assert '"removed": ["1.0.0", "2.0.0", "3.0.0"]' in result.stdout
    assert len(world.store.artifacts) == len(VERSIONS)


def test_releases_lists_the_stored_versions_oldest_first(world: World) -> None:
    result = world.run("releases")
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == VERSIONS
