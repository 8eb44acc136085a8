"""`plan`: the version it would deploy, the store, the nodes, batches, steps and tasks per stage."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli_world import World

TASK = "#!/bin/sh\n# stage: post_extract_release_archive\necho migrated\n"
SEED = "#!/bin/sh\n# stage: post_start_deployed_release\n# optional: seed\necho seeded\n"


def test_plan_names_the_newest_version_the_store_and_the_tasks(tmp_path: Path) -> None:
    """Without --version, the newest release of the store; each stage's tasks, run or skipped."""
    world = World(tmp_path)
    world.task_file("10_migrate.sh", TASK)
    world.task_file("20_seed.sh", SEED)
    result = world.run("plan", "prod")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "release: hello 2.0.0, from the store .deliver/releases"
    assert "tasks:" in lines and lines[-1] == "(a plan changes nothing)"
    assert "    run   10_migrate  (node)" in lines
    assert any(line.startswith("    skip  20_seed  (node)") for line in lines)
    assert world.running() == {"n0": None, "n1": None, "n2": None}


def test_plan_json_has_the_version_store_and_tasks(tmp_path: Path) -> None:
    """--version and --include are those of deploy; the JSON says what they resolve to."""
    world = World(tmp_path)
    world.task_file("20_seed.sh", SEED)
    result = world.run("plan", "prod", "--version", "1.0.0", "--include", "seed", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert (plan["version"], plan["store"]) == ("1.0.0", ".deliver/releases")
    (stage,) = [s for s in plan["tasks"] if s["tasks"]]
    assert stage["stage"] == "post_start_deployed_release" and stage["tasks"][0]["runs"] is True


def test_plan_of_a_version_not_in_the_store_is_refused_like_deploy(tmp_path: Path) -> None:
    """A --version the store does not hold: exit 2, the versions there are listed."""
    result = World(tmp_path).run("plan", "prod", "--version", "9.9.9")
    assert result.exit_code == 2
    assert "version 9.9.9 of hello is not in the store (it has: 1.0.0, 2.0.0)" in result.stderr


def test_plan_with_an_empty_store_says_so_and_still_plans(tmp_path: Path) -> None:
    """Nothing built yet: the plan says where the release would come from, exit 0."""
    world = World(tmp_path)
    world.store.artifacts.clear()
    result = world.run("plan", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["version"] is None
    human = world.run("plan", "prod")
    assert "none in the store yet (`edeliver build` puts one there)" in human.stdout
