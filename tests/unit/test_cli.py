"""The CLI on the in-memory fakes: exit codes, output, the lock, resume, abandon, log, history."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edeliver.cli.app import run
from edeliver.core.domain.model import Platform
from edeliver.core.ports import CommandResult, NodeLockHolder
from tests.support.cli_world import World, crash_deploy
from tests.support.simulation import config_text

runner = CliRunner()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_plan_shows_batches_and_steps_and_changes_nothing(tmp_path: Path) -> None:
    world = World(tmp_path, max_parallel=2)
    result = world.run("plan", "prod", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["batches"] == [["n0", "n1"], ["n2"]]
    assert plan["steps"][0].startswith("upload") and plan["strategy"] == "one_for_all"
    assert world.running() == {"n0": None, "n1": None, "n2": None}
    human = world.run("plan", "prod")
    assert "  1: n0, n1\n  2: n2\n" in human.stdout and "changes nothing" in human.stdout


def test_a_deploy_that_succeeds_exits_0_and_reports_every_node(world: World) -> None:
    result = world.run("deploy", "prod", "--version", "1.0.0", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["outcome"] == "succeeded"
    assert {n["state"] for n in report["nodes"].values()} == {"updated"}
    assert world.running() == {"n0": "1.0.0", "n1": "1.0.0", "n2": "1.0.0"}


def test_the_newest_version_is_deployed_by_default(world: World) -> None:
    assert world.run("deploy", "prod").exit_code == 0
    assert set(world.running().values()) == {"2.0.0"}


def test_a_failed_deploy_exits_1_after_its_fallback(world: World) -> None:
    """one_for_all + rollback: a node that fails to start brings every node back."""
    assert world.run("deploy", "prod", "--version", "1.0.0").exit_code == 0
    world.faults.add("n1", "activate")
    result = world.run("deploy", "prod", "--version", "2.0.0")
    assert result.exit_code == 1
    assert "rolled_back" in result.stdout and "activate" in result.stdout
    assert set(world.running().values()) == {"1.0.0"}


def test_a_version_not_in_the_store_is_refused_listing_the_ones_there_are(world: World) -> None:
    result = world.run("deploy", "prod", "--version", "9.9.9")
    assert result.exit_code == 2
    assert "version 9.9.9 of hello is not in the store (it has: 1.0.0, 2.0.0)" in result.stderr


def test_an_unreachable_node_refuses_the_deploy_before_any_change(world: World) -> None:
    world.hosts["n2"].reachable = False
    result = world.run("deploy", "prod", "--version", "1.0.0")
    assert result.exit_code == 3, result.output
    assert "n2 (10.0.0.1:2002): cannot connect: refused" in result.stderr
    assert "nothing was changed on any node" in result.stderr
    assert world.running() == {"n0": None, "n1": None, "n2": None}
    assert world.run("history", "--json").exit_code == 0
    (row,) = json.loads(world.run("history", "--json").stdout)["deployments"]
    assert row["outcome"] == "refused"


def test_mixed_platforms_are_refused_with_exit_3(world: World) -> None:
    world.hosts["n1"].platform = Platform("linux", "aarch64", "glibc", "2.36")
    result = world.run("deploy", "prod")
    assert result.exit_code == 3
    assert "different platforms" in result.stderr and "n1" in result.stderr
    assert world.running() == {"n0": None, "n1": None, "n2": None}


def test_a_second_deploy_to_a_locked_environment_is_refused_with_exit_3(world: World) -> None:
    """A deployer that died holds the lock; the next one is told who and since when."""
    crash_deploy(world, after=4)
    refused = world.run("deploy", "prod", "--version", "2.0.0")
    assert refused.exit_code == 3
    assert "is locked by deployment" in refused.stderr
    assert "(ann@laptop) since 2026-01-01T00:00:00" in refused.stderr


def test_resume_finishes_an_interrupted_deploy(world: World) -> None:
    crash_deploy(world, after=6)
    assert world.running() != {"n0": "1.0.0", "n1": "1.0.0", "n2": "1.0.0"}
    result = world.run("resume", "--json", "--force")  # the crashed deployer is known gone
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1])["outcome"] == "succeeded"
    assert world.running() == {"n0": "1.0.0", "n1": "1.0.0", "n2": "1.0.0"}
    log = [json.loads(line) for line in world.run("log", "--json").stdout.splitlines()]
    assert "Resumed" in [e["event"] for e in log]


def test_abandon_unlocks_and_needs_a_reason(world: World) -> None:
    """A deployment whose deployer died (its nodes' locks freed) is abandoned at once."""
    crash_deploy(world, after=3)
    (row,) = json.loads(world.run("history", "--json").stdout)["deployments"]
    assert world.run("abandon", row["id"][:8], "--reason", " ").exit_code == 2
    assert world.run("deploy", "prod", "--version", "2.0.0").exit_code == 3  # still locked
    abandoned = world.run("abandon", row["id"][:8], "--reason", "bad release")
    assert abandoned.exit_code == 0, abandoned.output
    assert world.run("deploy", "prod", "--version", "2.0.0").exit_code == 0
    rows = json.loads(world.run("history", "prod", "--json").stdout)["deployments"]
    assert [r["outcome"] for r in rows] == ["abandoned", "succeeded"]


def test_abandon_is_refused_while_a_node_is_locked_by_the_deployment_unless_forced(
    world: World,
) -> None:
    """A node held by the deployment (a live heartbeat) refuses abandon, naming it; --force goes."""
    crash_deploy(world, after=3)
    (row,) = json.loads(world.run("history", "--json").stdout)["deployments"]
    world.hosts["n1"].lock = NodeLockHolder(
        "n1", row["id"], "prod", "ann@laptop", "2026-01-01T00:00:00Z", 1.0, 1
    )
    refused = world.run("abandon", row["id"][:8], "--reason", "bad release")
    assert refused.exit_code == 3
    assert f"n1 is locked by deployment {row['id'][:8]} (prod, deployer ann@laptop)" in (
        refused.stderr
    )
    assert "--force" in refused.stderr
    forced = world.run("abandon", row["id"][:8], "--reason", "bad release", "--force")
    assert forced.exit_code == 0


def test_abandon_falls_back_to_the_event_clock_when_no_node_can_be_asked(world: World) -> None:
    """With every node unreachable, a deployment that wrote an event a moment ago is refused."""
    crash_deploy(world, after=3)
    (row,) = json.loads(world.run("history", "--json").stdout)["deployments"]
    for host in world.hosts.values():
        host.reachable = False
    refused = world.run("abandon", row["id"][:8], "--reason", "bad release")
    assert refused.exit_code == 3
    assert "recorded no interruption: its deployer may still be running" in refused.stderr


def test_log_prints_every_event_of_the_latest_deployment(world: World) -> None:
    assert world.run("deploy", "prod", "--version", "1.0.0").exit_code == 0
    lines = world.run("log").stdout.splitlines()
    assert "Started" in lines[0]
    assert any("n2: verifying -verified-> updated" in line for line in lines)
    assert "Finished" in lines[-1]
    records = [json.loads(line) for line in world.run("log", "--json").stdout.splitlines()]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))


def test_unknown_ids_and_environments_are_usage_errors(world: World) -> None:
    assert world.run("log", "deadbeef").exit_code == 2
    result = world.run("deploy", "qa")
    assert result.exit_code == 2 and "no environment 'qa' (defined: prod)" in result.stderr


def test_a_broken_config_is_one_line_with_exit_2(world: World) -> None:
    (world.project / ".deliver/edeliver.toml").write_text('app = "hello"\n[nodes.a]\nhost = 1\n')
    result = world.run("plan", "prod")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "nodes.a.host: expected a host name or address, got 1" in result.stderr


def test_a_node_without_room_for_the_release_refuses_before_upload(world: World) -> None:
    world.hosts["n1"].free_bytes = 1_000_000
    result = world.run("deploy", "prod", "--version", "1.0.0")
    assert result.exit_code == 3
    assert "not enough free disk for hello-1.0.0.tar.gz" in result.stderr and "n1" in result.stderr
    assert not any(host.uploads for host in world.hosts.values())


def test_resume_refuses_when_a_node_of_the_deployment_is_gone_from_the_config(
    world: World,
) -> None:
    crash_deploy(world, after=5)
    (world.project / ".deliver/edeliver.toml").write_text(config_text(2))
    result = world.run("resume", "--force")
    assert result.exit_code == 2
    assert "nodes n2 of deployment" in result.stderr and "no longer defined" in result.stderr


def test_a_task_module_that_fails_to_import_stops_the_deploy_before_anything(
    world: World,
) -> None:
    path = world.task_file("migrate.py", "import os\n\nos.no_such_function()\n")
    result = world.run("deploy", "prod", "--version", "1.0.0")
    assert result.exit_code == 2
    assert f"{path}:3: AttributeError" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert world.running() == {"n0": None, "n1": None, "n2": None}
    assert json.loads(world.run("history", "--json").stdout)["deployments"] == []


def test_deploy_warns_of_a_tag_no_task_carries_and_runs_the_selected_ones(
    world: World,
) -> None:
    world.task_file("seed.sh", "# stage: post_start_deployed_release\n# optional: seed\n")
    result = world.run("deploy", "prod", "--version", "1.0.0", "--include", "sede", "--json")
    assert result.exit_code == 0, result.output
    assert "no task is tagged 'sede'" in result.stderr
    result = world.run("deploy", "prod", "--version", "2.0.0", "--include", "seed", "--json")
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in world.run("log", "--json").stdout.splitlines()]
    assert {(e["node"], e["task"]) for e in log if e["event"] == "TaskRan"} == {
        ("n0", "seed"), ("n1", "seed"), ("n2", "seed"),
    }  # fmt: skip


def test_log_shows_the_output_of_a_failed_task(world: World) -> None:
    world.task_file("warm.sh", "# stage: post_start_deployed_release\n# critical: false\n")
    world.hosts["n1"].commands = lambda script, env: CommandResult(2, "cache: cold\nno route\n")
    assert world.run("deploy", "prod", "--version", "1.0.0").exit_code == 0
    log = world.run("log").stdout
    assert "n1: task warm at post_start_deployed_release: failed" in log
    assert "    | cache: cold\n    | no route\n    | (exit 2)" in log
    assert "n0: task warm at post_start_deployed_release: ok" in log


def test_sigterm_stops_a_command_like_ctrl_c_and_its_handler_is_removed_after() -> None:
    """A CI job cancelled sends SIGTERM: the command's coroutine is cancelled (a deployment
    records its interruption there), else it ends as Ctrl-C does; SIGTERM is left as it was."""
    cancelled: list[bool] = []

    async def waits_for_the_signal() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        run(waits_for_the_signal())
    assert cancelled == [True]
    assert signal.getsignal(signal.SIGTERM) == before
