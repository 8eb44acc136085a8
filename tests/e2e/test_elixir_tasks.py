"""Elixir task modules (`use Edeliver.Task`, DESIGN §7) on real nodes: a migration-like task
once per deployment calling the app's own module, the tasks of a node's stage in one VM with
their assigns reaching a later Python task, a failing critical Elixir task under one_for_all +
rollback whose cleanups run on every node that ran them, the last first, a task inside the VM
of a node upgraded hot, and a build-stage task using a dependency of the app. What ran is read
from the nodes (over OpenSSH) and the built project themselves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Project as E2eProject
from tests.e2e.test_hot_upgrade_rollout import report, rpc
from tests.e2e.test_tasks_on_nodes import FIRST, SECOND, Project, three_node_project
from tests.support.faults_hot import V1, V2, deploy_v1_and_build_package, hot_project
from tests.support.faults_tasks import write_tasks
from tests.support.ledger_project import bare_tally, ledger_copy, ledger_env
from tests.support.nodes import running_versions, ssh

EDELIVER = [sys.executable, "-m", "edeliver.cli"]
HOT_POLICY = 'mode = "upgrade"\nstrategy = "one_for_all"\nfallback = "rollback"\nstep_timeout = 120'


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    with three_node_project(tmp_path_factory.mktemp("e2e-elixir-tasks"), "elixir") as project:
        yield project


def _shared(line: str) -> str:
    """Elixir appending a line to the node's shared/ dir (the context's node path)."""
    return (
        'File.mkdir_p!(Path.join(ctx.node.path, "shared"))\n'
        f'    File.write!(Path.join(ctx.node.path, "shared/{{file}}"), "{line}\\n", [:append])\n'
    )


MIGRATE = """defmodule Hello.Deploy.Migrate do
  use Edeliver.Task, stage: :post_extract_release_archive, where: :once

  def run(ctx) do
    MARK
    assign(ctx, :migrated, Hello.version())
  end
end
""".replace("MARK", _shared("migrated to #{Hello.version()} on #{ctx.node.name}")).replace(
    "{file}", "migrations"
)

STAMPS = """defmodule Hello.Deploy.First do
  use Edeliver.Task, stage: :post_extract_release_archive

  def run(ctx) do
    ctx |> cmd("echo stamped on $NODE") |> assign(:vm, System.pid())
  end
end

defmodule Hello.Deploy.Second do
  use Edeliver.Task, stage: :post_extract_release_archive

  def run(ctx) do
    MARK
    assign(ctx, :stamp, "first in #{ctx.assigns.vm}, second in #{System.pid()}")
  end
end
""".replace("MARK", _shared("#{ctx.assigns.vm} #{System.pid()}")).replace("{file}", "vms")

READ_ASSIGN = """from edeliver import task

@task("post_extract_release_archive")
def read(ctx):
    ctx.run(f"echo '{ctx.assigns['stamp']}' >> shared/python_saw")
    return ctx
"""


def test_elixir_tasks_run_once_or_per_node_in_one_vm_and_hand_assigns_to_python(
    project: Project,
) -> None:
    """A `where: :once` task calls the app's module on one node only; the two tasks of one file
    run in one VM per node (one OS pid); a later Python task reads what they assigned."""
    write_tasks(
        project.directory,
        {"10_migrate.ex": MIGRATE, "20_stamps.ex": STAMPS, "30_read.py": READ_ASSIGN},
    )
    result = project.edeliver("deploy", "staging", "--version", FIRST, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    migrations = [
        line for n in project.fleet.names for line in project.shared_file(n, "migrations")
    ]
    assert len(migrations) == 1 and migrations[0].startswith(f"migrated to {FIRST} on elixir")
    for node in project.fleet.names:
        first_vm, second_vm = project.shared_file(node, "vms")[-1].split()
        assert first_vm == second_vm
        saw = project.shared_file(node, "python_saw")
        assert saw == [f"first in {first_vm}, second in {first_vm}"]
    assert set(running_versions(project.fleet).values()) == {FIRST}
    listed = project.edeliver("tasks", "staging", "--json")
    names = [t["name"] for stage in json.loads(listed.stdout)["stages"] for t in stage["tasks"]]
    assert names == [
        "10_migrate",
        "20_stamps.Hello.Deploy.First",
        "20_stamps.Hello.Deploy.Second",
        "30_read",
    ]


ROLLBACK_TASKS = {
    "10_reserve.ex": """defmodule Hello.Deploy.Reserve do
  use Edeliver.Task, stage: :post_extract_release_archive

  def run(ctx), do: cmd(ctx, "echo reserved $VERSION >> shared/reserve")
  def cleanup(ctx), do: cmd(ctx, "echo cleaned reserve $VERSION >> shared/reserve")
end
""",
    "20_warm.ex": """defmodule Hello.Deploy.Warm do
  use Edeliver.Task, stage: :post_extract_release_archive

  def run(ctx), do: cmd(ctx, "echo warmed $VERSION >> shared/reserve")
  def cleanup(ctx), do: cmd(ctx, "echo cleaned warm $VERSION >> shared/reserve")
end
""",
    "30_gate.ex": """defmodule Hello.Deploy.Gate do
  use Edeliver.Task, stage: :post_start_deployed_release, critical: true

  def run(ctx) do
    if ctx.node.name == "elixir3", do: raise("schema check failed on #{ctx.node.name}")
    ctx
  end
end
""",
}


def test_a_failing_critical_elixir_task_rolls_all_back_and_cleans_up_the_last_first(
    project: Project,
) -> None:
    """one_for_all + rollback: the gate raising on the last node rolls every node back to the
    release before, and each node ran the Elixir cleanups of what ran there, the last first."""
    write_tasks(project.directory, ROLLBACK_TASKS)
    result = project.edeliver("deploy", "waves", "--version", SECOND, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "schema check failed on elixir3" in result.stdout
    for node in project.fleet.names:
        assert project.shared_file(node, "reserve") == [
            f"reserved {SECOND}", f"warmed {SECOND}",
            f"cleaned warm {SECOND}", f"cleaned reserve {SECOND}",
        ]  # fmt: skip
    assert set(running_versions(project.fleet).values()) == {FIRST}
    log = project.edeliver("log", "--json")
    assert log.returncode == 0, log.stderr
    ran = [json.loads(line) for line in log.stdout.splitlines()]
    outcomes = {(e.get("node"), e.get("task"), e.get("outcome")) for e in ran if e.get("outcome")}
    assert ("elixir3", "30_gate", "failed") in outcomes
    assert ("elixir1", "10_reserve", "cleaned") in outcomes


HOT_TASK = """defmodule Hello.Deploy.AfterHot do
  use Edeliver.Task, stage: :post_start_deployed_release

  def run(ctx) do
    File.mkdir_p!(Path.join(ctx.node.path, "shared"))
    line = "#{Hello.version()} #{System.pid()} #{ctx.release} #{ctx.stage}\\n"
    File.write!(Path.join(ctx.node.path, "shared/after_hot"), line, [:append])
    ctx
  end
end
"""
# Marks the line before the Elixir task's: post_upgrade_release fires first.
UPGRADED_TASK = "# stage: post_upgrade_release\nmkdir -p shared\necho upgraded >> shared/after_hot"


@pytest.fixture(scope="module")
def hot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2eProject]:
    """One real node on hello v1 (deployed in upgrade mode) and the package v1 -> v2."""
    with hot_project(tmp_path_factory.mktemp("elixir-hot"), 1, HOT_POLICY) as project:
        deploy_v1_and_build_package(project)
        yield project


def test_an_elixir_task_after_a_hot_upgrade_runs_in_the_upgraded_vm(hot: E2eProject) -> None:
    """post_start_deployed_release fires on a node upgraded hot, after post_upgrade_release:
    the task runs inside the running VM (same OS pid as before the upgrade), calls the new code
    of the app, and is recorded at its stage."""
    node = hot.fleet.nodes[0]
    pid = rpc(hot.fleet, node, "IO.puts(System.pid())")
    write_tasks(hot.directory, {"after_hot.ex": HOT_TASK, "upgraded.sh": UPGRADED_TASK})
    result = hot.edeliver("upgrade", "hot", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert report(result)["routes"] == {node.name: f"hot upgrade from {V1}"}
    said = ssh(hot.fleet, node, f"cat {node.path}/shared/after_hot").stdout.splitlines()
    assert said == ["upgraded", f"{V2} {pid} {V2} post_start_deployed_release"]
    assert rpc(hot.fleet, node, "IO.puts(System.pid())") == pid
    log = hot.edeliver("log", "--json")
    assert log.returncode == 0, log.stderr
    ran = [json.loads(line) for line in log.stdout.splitlines()]
    assert [(e["stage"], e["task"], e["outcome"]) for e in ran if e["event"] == "TaskRan"] == [
        ("post_upgrade_release", "upgraded", "ok"),
        ("post_start_deployed_release", "after_hot", "ok"),
    ]


BUILD_TASK = """defmodule Ledger.Build.Sum do
  use Edeliver.Task, stage: :post_erlang_clean_compile, where: :build

  def run(ctx) do
    File.write!("build_sum", "#{Tally.sum([1, 2, 3])} at #{ctx.stage}")
    ctx
  end
end
"""


def test_a_build_stage_elixir_task_uses_a_module_of_a_dependency(tmp_path: Path) -> None:
    """`where: :build` runs in the built project by `mix run`: the app's deps are there (tally,
    a git dependency of examples/ledger)."""
    tally = bare_tally(tmp_path)
    directory = ledger_copy(tmp_path, 'app = "ledger"\n[build]\nrelease = "ledger"\n')
    write_tasks(directory, {"sum.ex": BUILD_TASK})
    built = subprocess.run(
        [*EDELIVER, "-C", str(directory), "build", "--json"],
        capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, **ledger_env("1.0.0", str(tally))},
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    assert (directory / "build_sum").read_text() == "6 at post_erlang_clean_compile"
