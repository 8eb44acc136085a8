"""Faults around the lock on each node (DESIGN §5), on real sshd nodes with real releases:
overlapping environments, a killed deployer, a live one, and a connection lost mid-switch."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faults_lock import GOOD, NEXT, LockLab
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LockLab]:
    """3 nodes on 0.1.0; blue = node1 + node2, green = node2 + node3."""
    lab = LockLab.create(tmp_path_factory.mktemp("lock-faults"))
    try:
        lab.ensure_all_on(GOOD)
        yield lab
    finally:
        lab.fleet.stop()


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out + err


def _deployment_of(lab: LockLab, environment: str) -> str:
    """The id of the newest deployment of `environment`."""
    return [r for r in lab.history() if r["environment"] == environment][-1]["id"]


def _assert_every_deployment_ended(lab: LockLab) -> None:
    """The events of every deployment load and none holds its environment's lock."""
    for row in lab.history():
        assert lab.events(row["id"]), row
        assert row["outcome"] is not None, row


def test_two_environments_sharing_a_node_deployed_at_once_act_on_it_one_at_a_time(
    lab: LockLab,
) -> None:
    """Of two deploys started together whose environments share node2, one acts and the other
    is refused (exit 3) before any change, naming the holder; every node ends on one release."""
    lab.ensure_all_on(GOOD)
    lab.flag("node2", "slow", "6")  # whoever gets node2 holds it a while
    blue = lab.start("deploy", "blue", "--version", NEXT)
    green = lab.start("deploy", "green", "--version", NEXT)
    (blue_code, blue_said), (green_code, green_said) = _finish(blue), _finish(green)
    assert sorted([blue_code, green_code]) == [0, 3], blue_said + green_said
    winner, loser_said = ("blue", green_said) if blue_code == 0 else ("green", blue_said)
    holder = _deployment_of(lab, winner)
    assert f"node2 is locked by deployment {holder[:8]} ({winner}, deployer " in loser_said
    assert "nothing was changed on any node" in loser_said
    assert loser_said.strip().count("\n") == 0, loser_said
    on_next = {"blue": ("node1", "node2"), "green": ("node2", "node3")}[winner]
    lab.assert_settled({n: NEXT if n in on_next else GOOD for n in lab.fleet.names})
    outcomes = {r["environment"]: r["outcome"] for r in lab.history()[-2:]}
    assert outcomes == {winner: "succeeded", ({"blue", "green"} - {winner}).pop(): "refused"}
    _assert_every_deployment_ended(lab)


def test_a_deployer_killed_mid_rollout_is_resumed_at_once_without_force(lab: LockLab) -> None:
    """SIGKILL drops the deployer's connections, so its nodes' holders exit: no heartbeat is
    alive and a plain `resume` is accepted at once, and finishes the rollout."""
    lab.ensure_all_on(NEXT)
    lab.flag("node1", "slow", "30")
    deployer = lab.start("deploy", "blue", "--version", GOOD)
    wait_for(lambda: lab.slow_task_running("node1"), 120, "the slow task")
    os.kill(deployer.pid, signal.SIGKILL)
    deployer.communicate(timeout=30)
    (lab.shared("node1") / "slow").unlink()  # the resumed step need not sleep again
    wait_for(lambda: lab.lock_free("node1") and lab.lock_free("node2"), 30, "holders gone")
    killed = _deployment_of(lab, "blue")
    resumed = lab.edeliver("resume", killed[:8])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Resumed" in lab.events(killed)
    lab.assert_settled({"node1": GOOD, "node2": GOOD, "node3": NEXT})
    _assert_every_deployment_ended(lab)


def test_a_second_operators_resume_is_refused_while_the_deployer_is_alive(lab: LockLab) -> None:
    """A deployer busy with a long step holds its nodes with live heartbeats: `resume` and
    `abandon` by someone else are refused (exit 3) naming the node, deployment and deployer."""
    lab.ensure_all_on(GOOD)
    lab.flag("node1", "slow", "15")
    deployer = lab.start("deploy", "blue", "--version", NEXT)
    wait_for(lambda: lab.slow_task_running("node1"), 120, "the slow task")
    live = _deployment_of(lab, "blue")
    resumed = lab.edeliver("resume", live[:8])
    abandoned = lab.edeliver("abandon", live[:8], "--reason", "looks stuck")
    for refused in (resumed, abandoned):
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert f"node1 is locked by deployment {live[:8]} (blue, deployer " in refused.stderr
        assert "still run by a live deployer" in refused.stderr
    code, said = _finish(deployer)
    assert code == 0, said
    assert "Resumed" not in lab.events(live)
    lab.assert_settled({"node1": NEXT, "node2": NEXT, "node3": GOOD})
    _assert_every_deployment_ended(lab)


def test_a_switch_left_running_by_a_lost_connection_never_switches_after_the_takeover(
    lab: LockLab,
) -> None:
    """The deployer dies while node1's switch script is stopping the old VM; `resume --force`
    takes node1 with a newer generation, so the stale script, once its stop ends, neither
    switches nor starts: node1 is started once, by the new deployer, on a complete release."""
    lab.ensure_all_on(GOOD)
    lab.flag("node1", "slow_stop", "8")
    before = lab.start_log("node1").count("stopping slowly")
    deployer = lab.start("deploy", "blue", "--version", NEXT)
    wait_for(lambda: lab.start_log("node1").count("stopping slowly") > before, 120, "the slow stop")
    os.kill(deployer.pid, signal.SIGKILL)  # its connection drops; the script on node1 goes on
    deployer.communicate(timeout=30)
    starts_before = lab.start_log("node1").count("--- start")
    stale = _deployment_of(lab, "blue")
    resumed = lab.edeliver("resume", stale[:8], "--force")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # Once no script of any deployer runs on node1 any more, exactly one start was made since
    # the kill: the new deployer's (the stale script, had it gone on, would have made another).
    wait_for(lambda: "edeliver-run-" not in _processes_of(lab, "node1"), 60, "stale gone")
    assert lab.start_log("node1").count("--- start") == starts_before + 1
    lab.assert_settled({"node1": NEXT, "node2": NEXT, "node3": GOOD})
    _assert_every_deployment_ended(lab)


def _processes_of(lab: LockLab, node: str) -> str:
    """The command lines of every process of the node, as one text."""
    lines = []
    for pid in lab.fleet.processes(node):
        with contextlib.suppress(OSError):  # it may end while we look
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            lines.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return "\n".join(lines)


def test_a_deployer_cut_off_loses_its_nodes_to_a_forced_resume_and_can_no_longer_act(
    lab: LockLab,
) -> None:
    """A deployer frozen mid-step (SIGSTOP: no heartbeats, connections open, as when its network
    is gone) keeps its nodes until their holders see no heartbeat for the bound; `resume --force`
    waits for that, then finishes. Woken, the stale deployer acts on no node and records
    nothing over the new history; every node ends on one complete release."""
    lab.ensure_all_on(GOOD)
    lab.flag("node1", "slow", "20")
    stale = lab.start("deploy", "blue", "--version", NEXT)
    wait_for(lambda: lab.slow_task_running("node1"), 120, "the slow task")
    stale_id = _deployment_of(lab, "blue")
    os.kill(stale.pid, signal.SIGSTOP)
    try:
        (lab.shared("node1") / "slow").unlink()
        assert not lab.lock_free("node1")  # still held: its heartbeat is not yet stale
        resumed = lab.edeliver("resume", stale_id[:8], "--force")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        lab.assert_settled({"node1": NEXT, "node2": NEXT, "node3": GOOD})
        starts = lab.start_log("node1").count("--- start")
    finally:
        os.kill(stale.pid, signal.SIGCONT)
    code, said = _finish(stale)
    assert code != 0, said  # it stopped without acting: the nodes are no longer its own
    lab.assert_settled({"node1": NEXT, "node2": NEXT, "node3": GOOD})
    assert lab.start_log("node1").count("--- start") == starts
    assert "Resumed" in lab.events(stale_id)
    _assert_every_deployment_ended(lab)
