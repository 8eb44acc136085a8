"""Fault: the deployer of a hot-upgrade rollout is SIGKILLed, then resumed by a new process.

3 real sshd nodes, hello v1 deployed, an upgrade package v1 -> v2 built. node1's VM is stopped
(it takes the full-release route), node2 and node3 run (hot route). The deployer dies once
node2 is activated; `resume --force` meets node3's code_change raising, so one_for_all +
rollback puts every node back on v1, each by the route it went forward: the routes come from the
events, not from the new process asking the nodes again. Then `releases prune --keep 1` after a
hot upgrade keeps what release_handler says runs and would be rolled back to.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet
from tests.e2e.conftest import Project
from tests.e2e.test_hot_upgrade_rollout import put_shared, report, rpc, wait_until_down
from tests.support.faults_hot import V1, V2, deploy_v1_and_build_package, hot_project, store_release
from tests.support.nodes import ssh

NEWEST = "0.3.0"
POLICY = (
    'mode = "upgrade"\nstrategy = "one_for_all"\nfallback = "rollback"\n'
    "max_parallel = 1\nstep_timeout = 120"
)
FULL = "full release: no VM answers on the node"
RELEASES = 'for {_, v, _, s} <- :release_handler.which_releases(), do: IO.puts("#{v}=#{s}")'


@pytest.fixture(scope="module")
def hot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """3 real nodes on hello v1 (deployed), the package v1 -> v2 and a newer v3 in the store."""
    with hot_project(tmp_path_factory.mktemp("hot-resume"), 3, POLICY) as project:
        deploy_v1_and_build_package(project)
        yield project


def test_a_killed_hot_rollout_resumed_with_a_failing_node_rolls_each_node_back_its_own_way(
    hot: Project,
) -> None:
    """node1 (full route) is switched back and restarted, node2 and node3 downgraded hot."""
    fleet = hot.fleet
    node1, node2, node3 = fleet.nodes
    ssh(fleet, node1, f"cd {node1.path}/current && bin/hello stop", timeout=60)
    wait_until_down(fleet, node1)
    pids = {node.name: rpc(fleet, node, "IO.puts(System.pid())") for node in (node2, node3)}
    put_shared(node3, "hello.code_change_raises", "yes")
    try:
        deployer = hot.start("upgrade", "hot", "--json")
        deployment = _kill_once_activated(hot, deployer, "node2")
        resumed = hot.edeliver("resume", deployment, "--force", "--json")
    finally:
        put_shared(node3, "hello.code_change_raises", None)

    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert {n: row["state"] for n, row in summary["nodes"].items()} == dict.fromkeys(
        fleet.names, "rolled_back"
    )
    assert summary["routes"] == {
        "node1": FULL, "node2": f"hot upgrade from {V1}", "node3": f"hot upgrade from {V1}",
    }  # fmt: skip
    for node in fleet.nodes:
        _assert_runs_only(fleet, node, V1)
    assert {n.name: rpc(fleet, n, "IO.puts(System.pid())") for n in (node2, node3)} == pids
    _assert_events_load_and_lock_free(hot, deployment)


def test_prune_after_a_hot_upgrade_keeps_what_release_handler_says_runs_and_its_package(
    hot: Project,
) -> None:
    """The VMs' command lines still name v1; release_handler says v2 runs and v1 is old."""
    upgraded = hot.edeliver("upgrade", "hot", "--version", V2, "--json")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    store_release(hot.directory, NEWEST, "broken")  # built, never deployed: the newest

    pruned = hot.edeliver("releases", "prune", "--keep", "1", "--json")

    plan = report(pruned)
    assert plan["removed"] == []
    assert plan["kept"][V2].startswith("running on ")
    assert plan["kept"][V1].startswith("the rollback target on ")
    package = hot.directory / ".deliver/releases/hello" / V2 / "upgrades" / V1
    assert any(package.glob("*.tar.gz")), f"{package}: the upgrade package is gone"
    status = json.loads(hot.edeliver("status", "hot", "--json").stdout)["nodes"]
    assert {(r["running_version"], r["current_version"]) for r in status} == {(V2, V2)}


def _kill_once_activated(hot: Project, deployer: subprocess.Popen[str], node: str) -> str:
    """SIGKILL the deployer once `node`'s activation in its deployment is stored; its id."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert deployer.poll() is None, "the deployment ended before it could be killed"
        deployment = _latest_unfinished(hot)
        if deployment and any(_activated(e, node) for e in hot.events(deployment)):
            deployer.send_signal(signal.SIGKILL)
            deployer.communicate(timeout=30)
            return deployment
        time.sleep(0.2)
    deployer.kill()
    raise AssertionError(f"{node} was not activated in time")


def _latest_unfinished(hot: Project) -> str | None:
    said = hot.edeliver("history", "hot", "--json")
    rows = json.loads(said.stdout)["deployments"] if said.returncode == 0 else []
    return next((str(r["id"]) for r in reversed(rows) if r["outcome"] is None), None)


def _activated(event: dict[str, object], node: str) -> bool:
    return event.get("node") == node and event.get("trigger") == "activated"


def _assert_runs_only(fleet: LocalFleet, node: FleetNode, version: str) -> None:
    """One VM, running `version` by release_handler and the app, which is permanent; `current`
    names a complete release."""
    said = dict(line.split("=") for line in rpc(fleet, node, RELEASES).splitlines())
    assert said.get(version) == "permanent" and "current" not in said.values(), said
    assert rpc(fleet, node, "IO.puts(Hello.version())") == version
    vms = ssh(fleet, node, "pgrep -u \"$(id -u)\" -f 'bea[m].smp' | wc -l").stdout.strip()
    assert vms == "1", f"{node.name}: {vms} VMs"
    complete = (
        f'cd {node.path}/current && v=$(cut -d" " -f2 releases/start_erl.data) && '
        'test -x bin/hello && test -f "releases/$v/start.boot" && ls -d erts-* >/dev/null && '
        'echo "$(basename "$(pwd -P)")"'
    )
    answer = ssh(fleet, node, complete)  # every root here is v1's: hot upgrades install into it
    assert answer.returncode == 0 and answer.stdout.strip() == V1, answer.stdout + answer.stderr


def _assert_events_load_and_lock_free(hot: Project, deployment: str) -> None:
    log = hot.edeliver("log", deployment, "--json")
    assert log.returncode == 0 and log.stdout.strip(), log.stderr
    history = json.loads(hot.edeliver("history", "hot", "--json").stdout)["deployments"]
    assert [r["outcome"] for r in history if r["id"] == deployment] == ["failed"]
    assert all(r["outcome"] for r in history), history  # none left holding the lock
