"""Faults in Elixir task modules, on real sshd nodes with real hello releases: a task that never
returns on one node, a module that cannot compile (refused here) and one that compiles only
without the app (fails on the nodes). After each: what the nodes run, where
`current` points and whether it is whole, that the deployment's events load and that its
environment's lock is free (`history` shows it ended; the next test deploys)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.faults_tasks import GOOD, NEXT, FaultProject, fault_project
from tests.support.nodes import ssh

ENVIRONMENTS = """
[environments.isolated]
nodes = NODES
strategy = "one_for_one"
fallback = "rollback"
step_timeout = 10

[environments.together]
nodes = NODES
strategy = "one_for_all"
fallback = "rollback"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProject]:
    with fault_project(tmp_path_factory.mktemp("elixir-task-faults"), 2, ENVIRONMENTS) as project:
        yield project


HUNG = """defmodule Hello.Deploy.Hang do
  use Edeliver.Task, stage: :post_extract_release_archive

  def run(ctx) do
    if ctx.node.name == "node2", do: Process.sleep(:infinity)
    ctx
  end
end
"""
# The task's VM on the node: its command line names the program's temporary file.
TASK_VMS = 'pgrep -u "$(id -u)" -f "edeliver-tas[k]" || true'


def test_an_elixir_task_that_never_returns_is_stopped_at_the_step_timeout(
    project: FaultProject,
) -> None:
    """one_for_one + rollback, step_timeout 10 s: node2's task is stopped in its VM and recorded
    failed with why; node2 is rolled back, node1 updated; no task VM is left on node2."""
    project.all_on(GOOD)
    project.tasks({"hang.ex": HUNG})
    done = project.edeliver("deploy", "isolated", "--version", NEXT, "--json", limit=240)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "task hang failed at post_extract_release_archive" in done.stdout
    assert "timed out after 10s and was stopped" in done.stdout
    project.assert_nodes_on({"node1": NEXT, "node2": GOOD})
    events = project.assert_ended_and_readable("isolated", "failed")
    ran = {
        (e.get("node"), e.get("outcome"))
        for e in events
        if e.get("task") == "hang" and e.get("outcome")
    }
    assert ran == {("node1", "ok"), ("node2", "failed")}
    node2 = project.fleet.node("node2")
    assert ssh(project.fleet, node2, TASK_VMS).stdout.strip() == ""


BROKEN = """defmodule Hello.Deploy.Broken do
  use Edeliver.Task, stage: :post_extract_release_archive

  def run(ctx) do
    ctx |> not_a_function()
  end
end
"""


def test_an_elixir_module_that_cannot_compile_is_refused_before_any_node_is_touched(
    project: FaultProject,
) -> None:
    """An undefined function: one line naming file and line, exit 2, no deployment begun."""
    project.all_on(GOOD)
    before = project.last_deployment("together")["id"] if _has_history(project) else None
    project.tasks({"broken.ex": BROKEN})
    done = project.edeliver("deploy", "together", "--version", NEXT, "--json", limit=240)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert ".deliver/tasks/broken.ex:5: undefined function not_a_function/1" in line
    project.assert_nodes_on({n: GOOD for n in project.fleet.names})
    after = project.last_deployment("together")["id"] if _has_history(project) else None
    assert after == before


def _has_history(project: FaultProject) -> bool:
    done = project.edeliver("history", "together", "--json")
    return done.returncode == 0 and bool(json.loads(done.stdout)["deployments"])


NOT_IN_THE_APP = """defmodule Hello.Deploy.Elsewhere do
  use Edeliver.Task, stage: :post_extract_release_archive
  import Hello.NoSuchModule

  def run(ctx), do: ctx
end
"""


def test_an_elixir_module_that_does_not_compile_with_the_app_leaves_every_node_on_its_release(
    project: FaultProject,
) -> None:
    """A module the app lacks passes the check here; on the node the compiler's file:line
    reaches the report, and one_for_all + rollback leaves every node on its release."""
    project.all_on(GOOD)
    project.tasks({"elsewhere.ex": NOT_IN_THE_APP})
    done = project.edeliver("deploy", "together", "--version", NEXT, "--json", limit=240)
    assert done.returncode == 1, done.stdout + done.stderr
    assert ".deliver/tasks/elsewhere.ex:3: module Hello.NoSuchModule is not loaded" in done.stdout
    project.assert_nodes_on({n: GOOD for n in project.fleet.names})
    events = project.assert_ended_and_readable("together", "failed")
    outcomes = {e.get("outcome") for e in events if e.get("task") == "elsewhere"}
    assert outcomes - {None} == {"failed"}
    for node in project.fleet.nodes:
        assert ssh(project.fleet, node, f"test ! -e {node.path}/releases/{NEXT}").returncode == 0
