"""Faults in tasks, on real sshd nodes with real hello releases: a hung local task before the
rollout, a hung Python task on one node, a task printing the deployer's secrets. After each: what
the nodes run, where `current` points and whether it is whole, that the deployment's events load
and that its environment's lock is free (`history` shows it ended; the next test deploys)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faults_tasks import GOOD, NEXT, FaultProject, fault_project, gone
from tests.support.nodes import ssh

ENVIRONMENTS = """
[environments.quick]
nodes = NODES
step_timeout = 5

[environments.isolated]
nodes = NODES
strategy = "one_for_one"
fallback = "rollback"
max_parallel = 3
step_timeout = 30
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProject]:
    with fault_project(tmp_path_factory.mktemp("task-faults"), 3, ENVIRONMENTS) as project:
        yield project


HUNG_LOCAL = (
    "#!/bin/sh\n# stage: pre_erlang_update\n# where: local\n"
    "echo $$ > task.pid\n"
    "(sleep 600 & echo $! > sleeper.pid; wait) &\n"
    "wait\n"
)


def test_a_hung_local_task_before_the_rollout_is_stopped_at_the_step_timeout(
    project: FaultProject,
) -> None:
    """`sleep 600` at pre_erlang_update: refused (exit 3) at step_timeout = 5 s, with one line
    naming the task; its process tree is gone; no node was touched."""
    project.all_on(GOOD)
    project.tasks({"hang.sh": HUNG_LOCAL})
    done = project.edeliver("deploy", "quick", "--version", NEXT, limit=120)
    assert done.returncode == 3, done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert "task hang failed at pre_erlang_update" in line and "timed out after 5s" in line
    for pid_file in ("task.pid", "sleeper.pid"):
        assert gone(int((project.directory / pid_file).read_text()))
    project.assert_nodes_on({n: GOOD for n in project.fleet.names})
    for node in project.fleet.nodes:
        assert ssh(project.fleet, node, f"test ! -e {node.path}/releases/{NEXT}").returncode == 0
    events = project.assert_ended_and_readable("quick", "refused")
    [started] = [e for e in events if e["event"] == "TaskStarted"]
    [ran] = [e for e in events if e["event"] == "TaskRan"]
    assert (started["task"], started["node"], started["timeout"]) == ("hang", "", 5.0)
    assert ran["outcome"] == "failed"
    log = project.edeliver("log", started["deployment"])
    assert "local: task hang at pre_erlang_update: started (limit 5s)" in log.stdout


HUNG_ON_NODES = (
    "#!/bin/sh\n# stage: post_extract_release_archive\n# critical: false\n"
    'mkdir -p "$DEPLOY_PATH/shared"\n'
    'sleep 600 & echo $! > "$DEPLOY_PATH/shared/sleeper.pid"\n'
    "wait\n"
)


def test_a_hung_non_critical_shell_task_on_the_nodes_is_stopped_there_and_skipped(
    project: FaultProject,
) -> None:
    """`sleep 600` on every node, not critical: each run is stopped at step_timeout = 30 s with
    what it started on the node, recorded failed, and every node goes on to the new release."""
    project.all_on(GOOD)
    project.tasks({"warm.sh": HUNG_ON_NODES})
    done = project.edeliver("deploy", "isolated", "--version", NEXT, "--json", limit=240)
    assert done.returncode == 0, done.stdout + done.stderr
    project.assert_nodes_on({n: NEXT for n in project.fleet.names})
    for node in project.fleet.nodes:
        pid = ssh(project.fleet, node, f"cat {node.path}/shared/sleeper.pid").stdout.strip()
        assert pid.isdigit()
        still = ssh(project.fleet, node, f"test -e /proc/{pid} && cat /proc/{pid}/cmdline")
        assert "sleep" not in still.stdout, (node.name, still.stdout)
    events = project.assert_ended_and_readable("isolated", "succeeded")
    ran = {e["node"]: e for e in events if e["event"] == "TaskRan"}
    assert set(ran) == set(project.fleet.names)
    for run in ran.values():
        assert run["outcome"] == "failed" and not run["critical"]
        assert "timed out after 30s and was stopped" in run["output"]


HUNG_PYTHON = (
    "import time\nfrom edeliver import task\n\n"
    "@task('pre_start_deployed_release')\n"
    "def hang(ctx):\n"
    "    if ctx.node.name == {first!r}:\n"
    "        time.sleep(600)  # blocks its thread: no command to cancel\n"
    "    return ctx\n"
)


def test_a_hung_python_task_on_one_node_fails_that_node_only(project: FaultProject) -> None:
    """A Python body blocked for 600 s on one node: that node fails at its step_timeout and is
    rolled back, the other two are updated, and the CLI exits (exit 1) with the body still
    blocked in its thread."""
    project.all_on(GOOD)
    first, *others = project.fleet.names
    project.tasks({"hang.py": HUNG_PYTHON.format(first=first)})
    done = project.edeliver("deploy", "isolated", "--version", NEXT, "--json", limit=240)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.seconds < 200  # the body sleeps 600 s: the CLI did not wait for it
    project.assert_nodes_on({first: GOOD, **{n: NEXT for n in others}})
    events = project.assert_ended_and_readable("isolated", "failed")
    failed = [e for e in events if e["event"] == "NodeTransitioned" and e["trigger"] == "fail"]
    assert [e["node"] for e in failed] == [first]
    assert "task hang failed at pre_start_deployed_release" in failed[0]["detail"]
    assert "timed out after 30s and was stopped" in failed[0]["detail"]
    started = {e["node"] for e in events if e["event"] == "TaskStarted"}
    ran = {e["node"]: e["outcome"] for e in events if e["event"] == "TaskRan"}
    assert started == set(project.fleet.names)
    assert ran == {first: "failed", **{n: "ok" for n in others}}


def test_a_task_printing_the_deployers_secrets_leaves_none_in_the_log_or_the_database(
    project: FaultProject,
) -> None:
    """A local task printing its environment and a node task echoing secrets over SSH: the
    AWS secret key, the PostgreSQL password and a DATABASE_URL's password appear neither in
    `edeliver log` (JSON or human) nor in the SQLite file's bytes, but the output is kept."""
    project.all_on(GOOD)
    aws, pg, db = (f"{kind}-{secrets.token_hex(8)}" for kind in ("aws", "pg", "db"))
    env = {
        "AWS_SECRET_ACCESS_KEY": aws,
        "PGPASSWORD": pg,
        "DATABASE_URL": f"postgresql://app:{db}@db.invalid:5432/app",
    }
    project.tasks(
        {
            "10_env.sh": (
                "# stage: post_start_deployed_release\n# where: local\n"
                'env\necho "the password alone: $PGPASSWORD"\n'
            ),
            "20_echo.py": (
                "import os\nfrom edeliver import task\n\n"
                "@task('post_start_deployed_release')\n"
                "def echo(ctx):\n"
                "    ctx.run('echo on the node ' + os.environ['AWS_SECRET_ACCESS_KEY'] + ' '"
                " + os.environ['DATABASE_URL'])\n"
                "    return ctx\n"
            ),
        }
    )
    done = project.edeliver("deploy", "base", "--version", NEXT, "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    project.assert_nodes_on({n: NEXT for n in project.fleet.names})
    events = project.assert_ended_and_readable("base", "succeeded")
    outputs = [e["output"] for e in events if e["event"] == "TaskRan"]
    assert sum("AWS_SECRET_ACCESS_KEY=[redacted]" in o for o in outputs) == 3  # it did print
    assert sum("on the node [redacted] postgresql://app:[redacted]@db" in o for o in outputs) == 3
    human = project.edeliver("log", "--json").stdout + project.edeliver("log").stdout
    stored = b"".join(p.read_bytes() for p in _event_files(project.directory))
    for value in (aws, pg, db):
        assert value not in done.stdout + done.stderr + human
        assert value.encode() not in stored


def _event_files(directory: Path) -> list[Path]:
    """The SQLite event store and its journal files, whatever their state."""
    files = sorted((directory / ".deliver").glob("events.db*"))
    assert files and files[0].name == "events.db"
    return files
