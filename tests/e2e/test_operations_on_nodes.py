"""Day-2 operations on 3 real nodes through the command line: start, stop, restart, ping.

What runs is asked of the nodes themselves (OpenSSH: the status file hello writes once its
supervision tree is up, and the OS pid in it), never of Edeliver.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import uuid4

import pytest

from edeliver.adapters.events.event_store import open_deployments
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.node_scripts import STATUS_FILE_HEALTH
from edeliver.cli.demo import prepare_project
from edeliver.core.domain.deployment import Deployment
from tests.e2e.conftest import EDELIVER, GOOD, NEXT, Project
from tests.support.hello_release import put_in_local_store
from tests.support.nodes import ssh
from tests.support.waiting import wait_for

LABELS = {"n1": "eu", "n2": "eu", "n3": "us"}


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """3 real nodes (labels eu, eu, us) running hello 0.1.0; `prod` restarts one at a time."""
    root = tmp_path_factory.mktemp("ops")
    fleet = LocalFleet(root / "fleet", 3, name_prefix="n")
    fleet.start()
    try:
        directory = prepare_project(
            root, fleet, "prod",
            'max_parallel = 1\nstep_timeout = 60\nmigrate = "Hello.Release.migrate"',
        )  # fmt: skip
        config = directory / ".deliver/edeliver.toml"
        text = config.read_text()
        for name, label in LABELS.items():
            text = text.replace(f"[nodes.{name}]\n", f'[nodes.{name}]\nlabels = ["{label}"]\n')
        config.write_text(f"{text}\n[commands]\nhealth = {json.dumps(STATUS_FILE_HEALTH)}\n")
        put_in_local_store(directory, [(GOOD, "good"), (NEXT, "good")])
        project = Project(directory, fleet)
        deployed = project.deploy("prod", GOOD)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        yield project
    finally:
        fleet.stop()


def vm_pid(project: Project, node: str) -> int | None:
    """The OS pid of the node's hello VM, from the status file it writes once it is up."""
    fleet_node = project.fleet.node(node)
    said = ssh(
        project.fleet, fleet_node,
        f"cd {fleet_node.path}/current && f=tmp/hello.status && test -f $f && "
        'p=$(sed -n s/^pid=//p $f) && kill -0 "$p" && echo "$p"',
    )  # fmt: skip
    return int(said.stdout) if said.returncode == 0 and said.stdout.strip().isdigit() else None


def vm_pids(project: Project) -> dict[str, int | None]:
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(LABELS, pool.map(lambda n: vm_pid(project, n), LABELS), strict=True))


def results(result: Any) -> dict[str, Any]:
    """A command's --json document, which says its shape's version first."""
    assert result.stdout.strip(), result.stderr
    document = dict(json.loads(result.stdout))
    assert next(iter(document.items())) == ("schema", "edeliver/v1")
    return document


def all_up(project: Project) -> None:
    """Every node runs hello (started again by `start` if an earlier test stopped one)."""
    if None in vm_pids(project).values():
        started = project.edeliver("start", "prod")
        assert started.returncode == 0, started.stdout + started.stderr
    assert None not in vm_pids(project).values()


def test_restart_in_batches_keeps_one_node_up_at_every_moment(ops: Project) -> None:
    """Each VM is replaced by a new one, one batch at a time: probes taken all along the
    restart always find a node up, and they do see each node down in its turn."""
    all_up(ops)
    before = vm_pids(ops)
    rounds: list[dict[str, int | None]] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            rounds.append(vm_pids(ops))

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        result = ops.edeliver("restart", "prod", "--json")
    finally:
        done.set()
        prober.join()
    assert result.returncode == 0, result.stdout + result.stderr
    report = results(result)
    assert report["outcome"] == "succeeded"
    assert [n["result"] for n in report["nodes"]] == ["ok"] * 3
    after = vm_pids(ops)
    assert all(after[n] not in (None, before[n]) for n in LABELS), (before, after)
    assert all(any(r.values()) for r in rounds), rounds
    seen_down = {n for r in rounds for n, pid in r.items() if pid is None}
    assert seen_down == set(LABELS), rounds


def test_history_lists_the_restart_with_who_did_it(ops: Project) -> None:
    """A restart is recorded: `history` names its action, nodes, deployer and outcome."""
    all_up(ops)
    restarted = results(ops.edeliver("restart", "prod", "--node", "n3", "--json"))
    rows = results(ops.edeliver("history", "prod", "--json"))["deployments"]
    row = next(r for r in rows if r["id"] == restarted["operation"])
    assert (row["kind"], row["action"]) == ("operation", "restart")
    assert (row["nodes"], row["outcome"]) == (["n3"], "succeeded")
    assert row["started_by"] and "@" in row["started_by"]
    events = [e["event"] for e in ops.events(restarted["operation"])]
    assert events == ["Started", "NodeOperated", "Finished"]


def test_stop_and_start_act_only_on_the_node_named(ops: Project) -> None:
    """`stop --node n2` stops n2 alone (ping says so, exit 1); `start --node n2` brings it
    back with a new VM."""
    all_up(ops)
    before = vm_pids(ops)
    stopped = ops.edeliver("stop", "prod", "--node", "n2")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert vm_pids(ops) == {**before, "n2": None}
    pinged = ops.edeliver("ping", "prod", "--json")
    assert pinged.returncode == 1
    assert {n["node"]: n["result"] for n in results(pinged)["nodes"]} == {
        "n1": "up", "n2": "down", "n3": "up",
    }  # fmt: skip
    started = ops.edeliver("start", "prod", "--node", "n2")
    assert started.returncode == 0, started.stdout + started.stderr
    assert started.stdout.split()[:2] == ["n2", "ok"]
    assert vm_pids(ops)["n2"] not in (None, before["n2"])
    assert ops.edeliver("ping", "prod").returncode == 0


def test_a_label_selects_the_nodes_that_carry_it(ops: Project) -> None:
    """`restart --label eu` restarts n1 and n2 and leaves n3's VM as it was."""
    all_up(ops)
    before = vm_pids(ops)
    report = results(ops.edeliver("restart", "prod", "--label", "eu", "--json"))
    assert [n["node"] for n in report["nodes"]] == ["n1", "n2"]
    after = vm_pids(ops)
    assert after["n3"] == before["n3"]
    assert after["n1"] != before["n1"] and after["n2"] != before["n2"]


def test_a_restart_is_refused_while_a_deployment_holds_the_environment(ops: Project) -> None:
    """A deployment in progress holds `prod`: restart exits 3 naming it, and no VM changes."""
    all_up(ops)
    before = vm_pids(ops)
    with deployment_in_progress(ops) as held:
        refused = ops.edeliver("restart", "prod")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert f"locked by deployment {held.short_id} (someone@elsewhere)" in refused.stderr
    assert vm_pids(ops) == before


@contextlib.contextmanager
def deployment_in_progress(project: Project) -> Iterator[Deployment]:
    """A deployment of 0.2.0 to prod that holds the environment's lock (no node's), as one
    whose deployer is at work would; abandoned after."""
    deployments = open_deployments(project.directory)
    held = Deployment(
        str(uuid4()), "hello", "prod", NEXT, "release", {"strategy": "one_for_all",
        "fallback": "rollback"}, list(LABELS), [list(LABELS)], "someone@elsewhere", "now",
    )  # fmt: skip
    try:
        deployments.begin(held)
        yield held
    finally:
        deployments.abandon(held, "test over", "test", "now")
        deployments.close()


def test_a_node_not_in_the_environment_is_one_line_and_exit_2(ops: Project) -> None:
    """--node with a name the environment lacks changes nothing and names it."""
    result = ops.edeliver("restart", "prod", "--node", "web9")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "edeliver: --node web9: not a node of environment 'prod' (its nodes: n1, n2, n3)"
    ]


def test_eval_and_rpc_answer_per_node(ops: Project) -> None:
    """`eval` runs the release's code in a new VM on each node, `rpc` in the running VM:
    each node answers with its own OS pid, the running VM's being the one its status file names."""
    all_up(ops)
    evaluated = results(ops.edeliver("eval", "prod", "IO.puts(Hello.version())", "--json"))
    assert {n["node"]: n["output"] for n in evaluated["nodes"]} == dict.fromkeys(LABELS, GOOD)
    pids = vm_pids(ops)
    called = ops.edeliver("rpc", "prod", "IO.puts(System.pid())")
    assert called.returncode == 0, called.stderr
    assert sorted(called.stdout.splitlines()) == [f"{n} | {pids[n]}" for n in LABELS]


def test_a_failing_expression_is_shown_per_node_with_exit_1(ops: Project) -> None:
    """An expression that raises: its error is shown after the node's name, then one line
    on stderr says which node failed; exit 1."""
    result = ops.edeliver("rpc", "prod", 'raise "boom"', "--node", "n1")
    assert result.returncode == 1
    assert any(line.startswith("n1 | ") and "boom" in line for line in result.stdout.splitlines())
    assert result.stderr.splitlines() == ["edeliver: n1: `rpc` exited 1"]


def test_lock_status_names_the_holder_of_the_environment_and_of_each_node(ops: Project) -> None:
    """While a deployment holds prod, `lock status` names it; its nodes are free."""
    with deployment_in_progress(ops) as held:
        status = results(ops.edeliver("lock", "status", "prod", "--json"))
    assert status["held_by"]["id"] == str(held.id)
    assert status["held_by"]["holder"] == "someone@elsewhere"
    assert [n["result"] for n in status["nodes"]] == ["free"] * 3
    assert "prod: free" in ops.edeliver("lock", "status", "prod").stdout


def test_logs_follow_shows_a_line_the_app_writes_after_following_started(ops: Project) -> None:
    """`logs -f` says when every node is followed; a line the app logs after that appears
    with its node's name, so does one of a newer log file (as run_erl rotates them), and
    Ctrl-C ends it with exit 130."""
    all_up(ops)
    n1 = ops.fleet.node("n1")
    log_5 = f"{n1.path}/current/tmp/log/erlang.log.5"  # newer than run_erl's erlang.log.1
    follower = ops.start("logs", "prod", "-f", "--lines", "0")
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(follower.stdout or []))
    reader.start()
    try:
        assert follower.stderr is not None
        assert "following the logs of n1, n2, n3" in follower.stderr.readline()
        marker = f"marker-{uuid4().hex[:8]}"
        logged = ops.edeliver(
            "rpc", "prod", f'require Logger; Logger.warning("{marker}")', "--node", "n2"
        )
        assert logged.returncode == 0, logged.stderr
        wait_for(lambda: any(marker in line for line in said), 30, "the marker in the log")
        assert all(line.startswith("n2 | ") for line in said if marker in line)
        rotated = f"rotated-{uuid4().hex[:8]}"  # run_erl writing a newer erlang.log.N
        wrote = ssh(ops.fleet, n1, f"echo {rotated} >{log_5}")
        assert wrote.returncode == 0, wrote.stderr
        wait_for(lambda: f"n1 | {rotated}\n" in said, 30, "the rotated log's line")
    finally:
        ssh(ops.fleet, n1, f"rm -f {log_5}")
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=30) == 130
        reader.join()


def test_logs_prints_each_nodes_last_lines_after_its_name(ops: Project) -> None:
    """Without -f: the last lines of each node's log, each after its node's name."""
    result = ops.edeliver("logs", "prod", "--lines", "3", "--label", "us")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert 0 < len(lines) <= 3 and all(line.startswith("n3 | ") for line in lines)


def read_until(fd: int, wanted: str, timeout: float) -> str:
    """What the pty printed, read until `wanted` shows up (a deadline, not a sleep)."""
    said = b""
    deadline = time.monotonic() + timeout
    while wanted.encode() not in said:
        left = deadline - time.monotonic()
        assert left > 0, f"waited {timeout:g}s for {wanted!r}; the console said {said!r}"
        if select.select([fd], [], [], left)[0]:
            said += os.read(fd, 4096)
    return said.decode(errors="replace")


def test_console_through_a_pty_answers_an_expression_and_quits(ops: Project) -> None:
    """`console prod n1` on a pty: an expression sent is evaluated in n1's running VM (its OS
    pid), Ctrl-G q quits the console alone, and the node's VM runs on."""
    all_up(ops)
    before = vm_pid(ops, "n1")
    main, child = pty.openpty()
    console = subprocess.Popen(
        [*EDELIVER, "-C", str(ops.directory), "console", "prod", "n1"],
        stdin=child, stdout=child, stderr=child, close_fds=True,
    )  # fmt: skip
    os.close(child)
    try:
        read_until(main, "iex(", 60)
        os.write(main, b'IO.puts("pid=" <> System.pid())\r')
        assert f"pid={before}" in read_until(main, f"pid={before}", 30)
        os.write(main, b"\x07")  # Ctrl-G: the user switch menu of the console's own VM
        read_until(main, "-->", 30)
        os.write(main, b"q\r")
        assert console.wait(timeout=60) == 0
    finally:
        if console.poll() is None:
            console.kill()
        os.close(main)
    assert vm_pid(ops, "n1") == before


def migrations(project: Project) -> dict[str, str]:
    """Each node's shared/hello.migrations: one line per run of Hello.Release.migrate."""
    said = {}
    for name in LABELS:
        node = project.fleet.node(name)
        cat = ssh(project.fleet, node, f"cat {node.path}/shared/hello.migrations 2>/dev/null")
        said[name] = cat.stdout
    return said


def test_migrate_runs_the_configured_function_once_on_one_node(ops: Project) -> None:
    """`migrate` evaluates `[environments.prod] migrate` once, on the first node only (or the
    one --node names), recorded like a restart; its output is the node's detail."""
    all_up(ops)
    before = migrations(ops)
    report = results(ops.edeliver("migrate", "prod", "--json"))
    assert (report["action"], report["outcome"]) == ("migrate", "succeeded")
    assert report["nodes"] == [
        {"node": "n1", "result": "ok", "ok": True, "detail": f"migrated {GOOD}"}
    ]
    assert migrations(ops) == {**before, "n1": before["n1"] + f"{GOOD}\n"}
    again = results(ops.edeliver("migrate", "prod", "--node", "n3", "--json"))
    assert [n["node"] for n in again["nodes"]] == ["n3"]
    assert migrations(ops)["n3"] == before["n3"] + f"{GOOD}\n"


def test_migrate_without_a_configured_function_says_which_key_to_set(ops: Project) -> None:
    """An environment without `migrate`: one line naming the key, exit 2, nothing recorded."""
    config = ops.directory / ".deliver/edeliver.toml"
    text = config.read_text()
    config.write_text(text + '\n[environments.bare]\nnodes = ["n1"]\n')
    try:
        result = ops.edeliver("migrate", "bare")
    finally:
        config.write_text(text)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"edeliver: {config}: environments.bare.migrate: not set; name the function that "
        'runs the migrations, e.g. migrate = "MyApp.Release.migrate"'
    ]


def test_a_deploy_to_one_node_is_recorded_as_such_and_status_shows_the_mix(ops: Project) -> None:
    """`deploy --node n2` updates n2 alone (the nodes say so), its summary and `history` say
    which nodes it was for, and `status` flags prod as mixed until all run one version."""
    all_up(ops)
    try:
        deployed = ops.edeliver("deploy", "prod", "--version", NEXT, "--node", "n2", "--json")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        summary = results(deployed)
        assert (summary["subset"], list(summary["nodes"])) == (True, ["n2"])
        assert ops.running() == {"n1": GOOD, "n2": NEXT, "n3": GOOD}
        status = ops.edeliver("status", "prod")
        assert status.stdout.splitlines()[-1] == f"prod is mixed: {GOOD} on n1, n3; {NEXT} on n2"
        assert results(ops.edeliver("status", "prod", "--json"))["mixed"] is True
        rows = results(ops.edeliver("history", "prod", "--json"))["deployments"]
        row = next(r for r in rows if r["id"] == summary["id"])
        assert row["kind"] == "deployment"
        assert (row["subset"], row["nodes"], row["version"]) == (True, ["n2"], NEXT)
    finally:
        back = ops.deploy("prod", GOOD)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "mixed" not in ops.edeliver("status", "prod").stdout
    assert results(ops.edeliver("status", "prod", "--json"))["mixed"] is False
