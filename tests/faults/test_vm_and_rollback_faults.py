"""Faults around the release's own VM and the rollbacks, on real sshd nodes with real releases:
an operator's console and a long eval VM during a deploy, three nodes given one node name, a
node rebooted mid-activate, a rollback of a VM still booting under a short step timeout, and a
deploy path whose filesystem fills just before the switch or just after it.

After each fault the nodes are asked (over OpenSSH) what runs, where `current` points and
whether it names a complete release; the deployment's events must load and it must have ended.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.faults_vm import (
    NEW,
    OLD,
    FaultProject,
    fault_project,
    node_states,
    points_at,
    reboot,
    summary,
    wait_for,
)
from tests.support.nodes import ssh


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProject]:
    yield from fault_project(tmp_path_factory.mktemp("faults-vm"))


@pytest.fixture(autouse=True)
def no_tasks_and_no_markers(project: FaultProject) -> Iterator[None]:
    """Each test brings its own tasks and node markers; none outlives it."""
    yield
    project.tasks({})
    for name in ("node1", "node2", "node3", "node4"):
        project.sh(name, f"rm -f {project.on(name).path}/shared/one-node-name")


def ssh_argv(project: FaultProject, name: str, command: str, tty: bool = False) -> list[str]:
    fleet, node = project.fleet, project.on(name)
    return [
        "ssh", *(["-tt"] if tty else []), "-i", str(fleet.client_key),
        "-o", f"UserKnownHostsFile={fleet.known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", "-p", str(node.port), f"{node.user}@{node.host}", command,
    ]  # fmt: skip


def other_beams(project: FaultProject, name: str, marker: str) -> list[int]:
    return [pid for pid, argv in project.beams(name) if marker in argv]


def test_a_console_and_an_eval_vm_attached_during_a_deploy_are_neither_counted_nor_stopped(
    project: FaultProject,
) -> None:
    """`bin/hello remote` on node1 and a long `bin/hello eval` on node2: the deploy succeeds and
    both are still alive afterwards."""
    project.ensure_on("two", OLD, ["node1", "node2"])
    path = project.on("node1").path
    console = subprocess.Popen(
        ssh_argv(project, "node1", f"cd {path}/current && exec bin/hello remote", tty=True),
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    probe = subprocess.Popen(
        ssh_argv(project, "node2", f"cd {path}/current && exec bin/hello eval "
                 "'Process.sleep(300_000)'"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        consoles = wait_for("console VM", lambda: other_beams(project, "node1", "--remsh"))
        evals = wait_for("eval VM", lambda: other_beams(project, "node2", "--eval"))
        code, report = project.deployed("two", NEW)
        assert (code, report["outcome"]) == (0, "succeeded"), report
        assert other_beams(project, "node1", "--remsh") == consoles
        assert other_beams(project, "node2", "--eval") == evals
        project.assert_settled(report["id"], {"node1": NEW, "node2": NEW})
    finally:
        for process in (console, probe):
            process.kill()
            process.wait()
        for name, marker in (("node1", "--remsh"), ("node2", "--eval")):
            for pid in other_beams(project, name, marker):
                ssh(project.fleet, project.on(name), f"kill -KILL {pid}")


def test_three_nodes_given_one_node_name_fail_the_deployment_and_all_go_back(
    project: FaultProject,
) -> None:
    """With 0.2.0 registering one name in one epmd, two of the three VMs die and the survivor
    answers the others' health checks: the deployment fails, one_for_all rolls every node back."""
    nodes = ["node1", "node2", "node3"]
    project.ensure_on("all", OLD, nodes)
    for name in nodes:
        project.put_on(name, "one-node-name", NEW)
    code, report = project.deployed("all", NEW)
    assert code == 1 and report["outcome"] != "succeeded", report
    assert set(node_states(report).values()) == {"rolled_back"}, report
    reasons = " ".join(node["reason"] for node in report["nodes"].values())
    assert "no VM runs" in reasons or "not this node's release VM" in reasons, reasons
    project.assert_settled(report["id"], dict.fromkeys(nodes, OLD))


def test_a_node_rebooted_mid_activate_is_rolled_back_once_its_sshd_is_back(
    project: FaultProject,
) -> None:
    """node3's processes (sshd, VMs, the step's script) are killed right after its switch and
    sshd comes back 12 s later: the rollback keeps reconnecting and reaches it."""
    project.ensure_on("rebooting", OLD, ["node3"])
    current = project.on("node3").root / "current"
    deploy = project.start("deploy", "rebooting", "--version", NEW, "--json")
    try:
        wait_for("switch to 0.2.0", lambda: points_at(current, NEW), timeout=120, every=0.02)
        reboot(project.fleet, "node3")
        back = threading.Timer(12, project.fleet.start_sshd, args=("node3",))
        back.start()
        stdout, stderr = deploy.communicate(timeout=300)
        back.join()
    finally:
        if deploy.poll() is None:
            deploy.kill()
    report = summary(stdout, stderr)
    assert (deploy.returncode, node_states(report)) == (1, {"node3": "rolled_back"}), report
    project.assert_settled(report["id"], {"node3": OLD})


FAIL_ON_NODE2 = (
    "# stage: pre_start_deployed_release\n# environments: quick\n"
    'if [ "$NODE" = node2 ]; then echo "node2 refuses on purpose"; exit 1; fi\n'
)


def test_a_just_activated_node_is_rolled_back_within_a_20s_step_timeout(
    project: FaultProject,
) -> None:
    """node2 fails just before its switch while node1 switches and starts 0.2.0: node1's VM,
    perhaps still booting, is stopped by signal and node1 ends rolled back, not rollback_failed."""
    project.ensure_on("quick", OLD, ["node1", "node2"])
    project.tasks({"fail_on_node2.sh": FAIL_ON_NODE2})
    started = time.monotonic()
    code, report = project.deployed("quick", NEW)
    took = time.monotonic() - started
    assert code == 1, report
    assert node_states(report) == {"node1": "rolled_back", "node2": "rolled_back"}, report
    project.assert_settled(report["id"], {"node1": OLD, "node2": OLD})
    print(f"deploy with a fallback rollback of a just-activated node took {took:.1f}s")


def fill_disk(stage: str) -> str:
    """A task filling node4's deploy path at `stage` (then failing, if after the switch)."""
    fail = "exit 1\n" if stage == "post_start_deployed_release" else ""
    return (
        f"# stage: {stage}\n# environments: small_disk\n"
        'dd if=/dev/zero of="$PWD/shared/filler" bs=1M 2>/dev/null; df -k .\n' + fail
    )


def test_a_disk_full_just_before_the_switch_fails_the_node_with_the_old_vm_still_running(
    project: FaultProject,
) -> None:
    """node4's filesystem fills right before activation: the switch cannot prepare its record,
    fails before stopping anything, and the very same old VM runs on with current unchanged."""
    project.ensure_on("small_disk", OLD, ["node4"])
    before = project.release_vms("node4")
    project.tasks({"fill.sh": fill_disk("pre_start_deployed_release")})
    try:
        code, report = project.deployed("small_disk", NEW)
        assert (code, node_states(report)) == (1, {"node4": "rolled_back"}), report
        assert "disk full" in report["nodes"]["node4"]["reason"], report
        assert project.release_vms("node4") == before
    finally:
        project.sh("node4", f"rm -f {project.on('node4').path}/shared/filler")
    project.assert_settled(report["id"], {"node4": OLD})


def test_a_disk_full_after_the_switch_still_lets_the_rollback_get_back(
    project: FaultProject,
) -> None:
    """node4's filesystem fills once 0.2.0 runs and a task then fails the node: getting back
    needs no space (the link back was made before the switch) and 0.1.0 runs again."""
    project.ensure_on("small_disk", OLD, ["node4"])
    project.tasks({"fill.sh": fill_disk("post_start_deployed_release")})
    try:
        code, report = project.deployed("small_disk", NEW)
        assert (code, node_states(report)) == (1, {"node4": "rolled_back"}), report
    finally:
        project.sh("node4", f"rm -f {project.on('node4').path}/shared/filler")
    project.assert_settled(report["id"], {"node4": OLD})
