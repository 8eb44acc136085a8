"""Faults: a rollback whose pre_rollback task meets a node that cannot be reached.

node3 is "rebooted" (its sshd, VMs and scripts killed) right after its switch. The rollback
that follows, its pre_rollback task first, waits for the node within the step timeout like the
rest of the rollback: when sshd is back the task runs and the node gets back; when it stays
down only that node ends `rollback_failed`, with one line saying why, and the deployment ends
(its events load, the environment is free) while the other node is back on the old release.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

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

UNREACHABLE = """
[environments.unreachable]
nodes = ["node2", "node3"]
strategy = "one_for_all"
fallback = "rollback"
step_timeout = 30
"""
# Leaves a mark on the node it ran on, where a reboot does not remove it.
PRE_ROLLBACK = '# stage: pre_rollback\necho "$NODE" >> shared/pre_rollback.ran\n'


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProject]:
    for made in fault_project(tmp_path_factory.mktemp("faults-rollback-unreachable")):
        with (made.directory / ".deliver/edeliver.toml").open("a") as config:
            config.write(UNREACHABLE)
        made.tasks({"pre_rollback.sh": PRE_ROLLBACK})
        yield made


def _rebooted_after_its_switch(
    project: FaultProject, environment: str, back_after: float | None
) -> dict[str, Any]:
    """Deploy NEW; reboot node3 once `current` names NEW; sshd back after `back_after` s
    (never, while the deployment runs, when None). The deployment's JSON summary."""
    current = project.on("node3").root / "current"
    deploy = project.start("deploy", environment, "--version", NEW, "--json")
    back = None
    try:
        wait_for("switch to 0.2.0", lambda: points_at(current, NEW), timeout=120, every=0.02)
        reboot(project.fleet, "node3")
        if back_after is not None:
            back = threading.Timer(back_after, project.fleet.start_sshd, args=("node3",))
            back.start()
        stdout, stderr = deploy.communicate(timeout=300)
    finally:
        if deploy.poll() is None:
            deploy.kill()
        if back is not None:
            back.join()
    assert deploy.returncode == 1, stdout + stderr
    return summary(stdout, stderr)


def _ran_on(project: FaultProject, name: str) -> list[str]:
    mark = f"{project.on(name).path}/shared/pre_rollback.ran"
    return project.sh(name, f"cat {mark} 2>/dev/null; rm -f {mark}").split()


def test_a_pre_rollback_task_waits_for_a_rebooted_node_and_the_rollback_gets_it_back(
    project: FaultProject,
) -> None:
    """sshd is back 12 s after the reboot: the pre_rollback task runs on node3 once it can, and
    node3 is rolled back to the old release."""
    project.ensure_on("rebooting", OLD, ["node3"])
    _ran_on(project, "node3")
    report = _rebooted_after_its_switch(project, "rebooting", back_after=12)
    assert node_states(report) == {"node3": "rolled_back"}, report
    assert _ran_on(project, "node3") == ["node3"]
    project.assert_settled(report["id"], {"node3": OLD})
    _assert_private(project, "node3")


def test_a_node_that_stays_unreachable_ends_rollback_failed_alone_with_one_line(
    project: FaultProject,
) -> None:
    """sshd stays down: node3's rollback (its pre_rollback task first) tries to reach it for the
    30 s step timeout, then ends rollback_failed saying so in one line; node2 is back on the
    old release and the deployment has ended."""
    project.ensure_on("unreachable", OLD, ["node2", "node3"])
    _ran_on(project, "node2")
    try:
        report = _rebooted_after_its_switch(project, "unreachable", back_after=None)
    finally:
        project.fleet.start_sshd("node3")
    assert node_states(report) == {"node2": "rolled_back", "node3": "rollback_failed"}, report
    reason = report["nodes"]["node3"]["reason"]
    assert "\n" not in reason, reason
    assert "could not be reached within the 30s step timeout" in reason, reason
    assert "cannot connect" in reason, reason
    assert _ran_on(project, "node2") == ["node2"] and _ran_on(project, "node3") == []
    project.assert_settled(report["id"], {"node2": OLD})
    _assert_whole(project, "node3", NEW)
    project.ensure_on("unreachable", OLD, ["node2", "node3"])  # the node, once back, redeploys


def _assert_whole(project: FaultProject, name: str, version: str) -> None:
    """`current` still names the complete release it switched to, and no VM runs anything else
    (the reboot may have missed a VM its start was forking at that moment: one, of `version`)."""
    path = project.on(name).path
    assert project.sh(name, f"readlink {path}/current").strip() == f"releases/{version}"
    project.sh(name, f"test -x {path}/current/bin/hello && test -d {path}/current/releases/"
               f"{version} && test -d {path}/current/lib")  # fmt: skip
    vms = [boot.split("/")[-2] for _, boot in project.release_vms(name)]
    assert vms in ([], [version]), vms


def _assert_private(project: FaultProject, name: str) -> None:
    """Node hygiene after the rollback too: uploads dir 0700, tarballs 0600, no COOKIE that
    group or others can read."""
    path = project.on(name).path
    said = project.sh(name, f"cd {path} && stat -c '%a %n' .edeliver/uploads "
                      ".edeliver/uploads/*.tar.gz releases/*/releases/COOKIE")  # fmt: skip
    modes = {
        file: int(mode, 8) for mode, file in (line.split(" ", 1) for line in said.splitlines())
    }
    assert modes.pop(".edeliver/uploads") == 0o700, said
    assert any(f.endswith(".tar.gz") for f in modes) and any("COOKIE" in f for f in modes), said
    for file, mode in modes.items():
        assert mode & 0o077 == 0, f"{file}: {mode:o}"
