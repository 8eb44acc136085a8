"""Full-release deployments to 5 real nodes through the `edeliver` command line.

Every assertion about what runs asks the nodes themselves (OpenSSH + `bin/hello rpc`), not
Edeliver: the event log says what Edeliver believes, the nodes say what is true.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import tarfile
from pathlib import Path
from typing import Any

import pytest

from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.node.local_host import comm
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.core.domain.config import FALLBACKS, STRATEGIES
from edeliver.core.domain.model import Artifact
from tests.e2e.conftest import BROKEN, GOOD, NEXT, Project
from tests.support.hello_release import tarball
from tests.support.waiting import wait_for


def report(result: Any) -> dict[str, Any]:
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_clean_deploy_runs_the_release_on_every_node(project: Project) -> None:
    """Build, deploy and status agree with what each node's BEAM answers."""
    project.ensure_all_on(GOOD)
    result = project.deploy("all", NEXT)
    assert result.returncode == 0, result.stderr
    assert {n["state"] for n in report(result)["nodes"].values()} == {"updated"}
    assert project.running() == dict.fromkeys(project.fleet.names, NEXT)
    status = json.loads(project.edeliver("status", "all", "--json").stdout)["nodes"]
    for row in status:
        assert (row["running_version"], row["current_version"]) == (NEXT, NEXT), row
        assert {GOOD, NEXT} <= set(row["releases"])


def _stored(project: Project, deployment: str) -> list[dict[str, Any]]:
    return project.events(deployment)


def _updated_before_first_failure(events: list[dict[str, Any]]) -> set[str]:
    early = set()
    for event in events:
        if event["event"] == "NodeTransitioned" and event["trigger"] == "fail":
            return early
        if event["event"] == "NodeTransitioned" and event["dest"] == "updated":
            early.add(event["node"])
    return early


@pytest.mark.parametrize("fallback", FALLBACKS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_release_that_fails_on_one_node_gets_the_fallback(
    project: Project, strategy: str, fallback: str
) -> None:
    """node3 refuses to boot 0.2.0; batches of 2; each node ends where DESIGN §4 says."""
    project.ensure_all_on(GOOD)
    project.refuse_on("node3", NEXT)
    result = project.deploy(f"{strategy}-{fallback}", NEXT)
    assert result.returncode == 1, result.stdout + result.stderr
    summary = report(result)
    states = {node: row["state"] for node, row in summary["nodes"].items()}
    running = project.running()
    events = _stored(project, summary["id"])

    for node, state in states.items():  # what Edeliver recorded is what the nodes run
        if state == "updated":
            assert running[node] == NEXT, (node, state, running)
        elif state in ("rolled_back", "skipped"):
            assert running[node] == GOOD, (node, state, running)
    assert running["node3"] != NEXT and states["node3"] in ("rolled_back", "halted", "failed")

    if fallback == "rollback" and strategy == "one_for_all":  # invariant 2
        assert set(running.values()) == {GOOD}
    if fallback == "rollback" and strategy == "rest_for_one":  # invariant 3
        early = _updated_before_first_failure(events)
        assert {n for n, v in running.items() if v == NEXT} == early
    if strategy == "one_for_one" or fallback == "ignore":  # invariant 5, and ignore
        assert all(running[n] == NEXT for n in project.fleet.names if n != "node3"), running
    if fallback == "stop":  # invariant 4: after the decision, nothing new starts in scope
        decided = next(e for e in events if e["event"] == "FallbackDecided")
        later = [
            e for e in events if e["seq"] > decided["seq"] and e["event"] == "NodeTransitioned"
        ]
        for node in decided["scope"]:
            triggers = [e["trigger"] for e in later if e["node"] == node]
            assert "start" not in triggers and len(triggers) <= 2, (node, triggers)


def test_rollback_returns_the_environment_to_the_previous_release(project: Project) -> None:
    project.ensure_all_on(GOOD)
    assert project.deploy("all", NEXT).returncode == 0
    result = project.edeliver("rollback", "all", "--json")
    assert result.returncode == 0, result.stderr
    assert report(result)["version"] == GOOD
    assert project.running() == dict.fromkeys(project.fleet.names, GOOD)


def test_a_release_that_never_boots_is_rolled_back_everywhere(project: Project) -> None:
    """one_for_all + rollback with a release broken on every node: all stay on the old one."""
    project.ensure_all_on(GOOD)
    result = project.deploy("all", BROKEN)
    assert result.returncode == 1
    assert {n["state"] for n in report(result)["nodes"].values()} == {"rolled_back"}
    assert project.running() == dict.fromkeys(project.fleet.names, GOOD)


def _wait_for(project: Project, condition: Any, timeout: float = 120) -> list[dict[str, Any]]:
    """The events of the latest deployment once `condition` holds of them."""

    def reached() -> list[dict[str, Any]] | None:
        events = project.events()
        return events if condition(events) else None

    return wait_for(reached, timeout, "the deployment to get there", every=0.3)


def _reached(events: list[dict[str, Any]], environment: str, node: str, state: str) -> bool:
    """The latest deployment is the one to `environment`, and `node` has entered `state`."""
    return events[0].get("environment") == environment and any(
        e["event"] == "NodeTransitioned" and e["node"] == node and e["dest"] == state
        for e in events
    )


def test_a_killed_deployer_is_resumed_and_a_second_deploy_is_refused(project: Project) -> None:
    """SIGKILL mid-rollout (node by node): the environment lock holds, and `resume`, with no
    --force, is accepted at once (the killed deployer's node locks went with its connections)
    and finishes the job."""
    project.ensure_all_on(GOOD)
    first = project.start("deploy", "waves", "--version", NEXT)
    _wait_for(project, lambda events: _reached(events, "waves", "node2", "activating"))
    concurrent = project.deploy("waves", NEXT)
    assert concurrent.returncode == 3, concurrent.stderr
    assert "is locked by deployment" in concurrent.stderr
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    again = project.deploy("waves", NEXT)
    assert again.returncode == 3 and "waves" in again.stderr
    resumed = project.edeliver("resume", "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert report(resumed)["outcome"] == "succeeded"
    assert project.running() == dict.fromkeys(project.fleet.names, NEXT)
    assert "Resumed" in [e["event"] for e in project.events(report(resumed)["id"])]


def test_a_changed_host_key_is_refused_before_any_change(project: Project) -> None:
    project.ensure_all_on(GOOD)
    project.fleet.rotate_host_key("node5")
    try:
        result = project.deploy("all", NEXT)
        assert result.returncode == 3, result.stdout + result.stderr
        assert "node5" in result.stderr and "CHANGED" in result.stderr
        for node in project.fleet.nodes:  # nothing switched anywhere
            assert (node.root / "current").resolve().name == GOOD
    finally:
        project.fleet.write_known_hosts()
    assert set(project.running().values()) == {GOOD}


def test_a_corrupted_artifact_is_refused_before_any_switch(project: Project) -> None:
    """A store copy damaged after its manifest was written: every node refuses it at prepare."""
    project.ensure_all_on(GOOD)
    version = "0.2.7"  # never uploaded anywhere, so no node has a good copy already
    store = LocalDirectoryStore(project.directory / ".deliver/releases")
    stored = Path(
        asyncio.run(
            store.put(
                tarball(version), Artifact("hello", version, "", 0, platform=local_platform())
            )
        ).location
    )
    damaged = bytearray(stored.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    stored.write_bytes(bytes(damaged))
    result = project.deploy("all", version)
    assert result.returncode == 1, result.stdout + result.stderr
    reasons = [n["reason"] for n in report(result)["nodes"].values()]
    assert any("checksum mismatch" in r for r in reasons), reasons
    assert project.running() == dict.fromkeys(project.fleet.names, GOOD)
    for node in project.fleet.nodes:
        assert not (node.root / "releases" / version).exists()
        assert (node.root / "current").resolve().name == GOOD


def test_an_unreachable_node_refuses_the_deploy_naming_it(project: Project) -> None:
    project.ensure_all_on(GOOD)
    project.fleet.kill_sshd("node4")
    try:
        result = project.deploy("all", NEXT)
        assert result.returncode == 3, result.stderr
        assert "node4" in result.stderr and "nothing was changed" in result.stderr
    finally:
        project.fleet.start_sshd("node4")
    assert project.running() == dict.fromkeys(project.fleet.names, GOOD)


def test_a_version_not_in_the_store_lists_the_ones_there_are(project: Project) -> None:
    result = project.deploy("all", "9.9.9")
    assert result.returncode == 2
    listed = re.search(r"\(it has: ([^)]*)\)", result.stderr)
    assert listed, result.stderr
    assert {GOOD, NEXT, BROKEN} <= set(listed.group(1).split(", "))


def _padded_release(project: Project, version: str) -> None:
    """A real release of `version`, padded with 48 MB of noise so its upload takes a while."""
    source = tarball(version)
    padded = project.directory / f"hello-{version}-padded.tar.gz"
    noise = project.directory / "noise.bin"
    noise.write_bytes(os.urandom(48 * 2**20))
    with tarfile.open(source) as original, tarfile.open(padded, "w:gz", compresslevel=1) as out:
        for member in original.getmembers():
            out.addfile(member, original.extractfile(member) if member.isfile() else None)
        out.add(noise, arcname=f"lib/padding-{version}.bin")
    store = LocalDirectoryStore(project.directory / ".deliver/releases")
    asyncio.run(store.put(padded, Artifact("hello", version, "", 0, platform=local_platform())))


def _kill_sshd_when_upload_is_under_way(project: Project, node: str, version: str) -> int:
    """SIGKILL every sshd of the node (listener and sessions) once the upload has begun."""
    partial = (
        project.fleet.node(node).root / ".edeliver/uploads" / f"hello-{version}.tar.gz.partial"
    )

    def upload_under_way() -> int:
        size = partial.stat().st_size if partial.exists() else 0
        return size if size > 4 * 2**20 else 0

    size = wait_for(upload_under_way, 120, "the upload to start", every=0.01)
    for pid in project.fleet.processes(node):
        if comm(pid) == "sshd":
            with contextlib.suppress(ProcessLookupError):  # a session may end first
                os.kill(pid, signal.SIGKILL)
    return size


def test_an_sshd_killed_mid_upload_fails_that_node_and_the_upload_resumes(project: Project) -> None:
    """one_for_one + ignore: the node that lost its sshd fails, the others go on; later the
    half-uploaded file is completed, not started again."""
    project.ensure_all_on(GOOD)
    version = "0.2.5"
    _padded_release(project, version)
    deploying = project.start("deploy", "one_for_one-ignore", "--version", version, "--json")
    try:
        cut_at = _kill_sshd_when_upload_is_under_way(project, "node2", version)
        out, err = deploying.communicate(timeout=300)
    finally:  # never leave a deployer running into the next test
        deploying.kill()
        project.fleet.start_sshd("node2")
    assert deploying.returncode == 1, out + err
    states = {n: row["state"] for n, row in json.loads(out.splitlines()[-1])["nodes"].items()}
    assert (
        states["node2"] == "failed"
        and "prepare" in json.loads(out.splitlines()[-1])["nodes"]["node2"]["reason"]
    )
    partial = (
        project.fleet.node("node2").root / ".edeliver/uploads" / f"hello-{version}.tar.gz.partial"
    )
    assert partial.stat().st_size >= cut_at  # what was sent before the cut is still there
    running = project.running()
    assert running["node2"] == GOOD and all(running[n] == version for n in running if n != "node2")
    again = project.deploy("one_for_one-ignore", version)
    assert again.returncode == 0, again.stdout + again.stderr
    assert project.running() == dict.fromkeys(project.fleet.names, version)
    assert not partial.exists()


def test_build_puts_a_verified_release_with_its_manifest_in_the_store(project: Project) -> None:
    """`edeliver build` runs mix release here and stores tarball and manifest; it deploys."""
    result = project.edeliver("build", "--json", env={"HELLO_VERSION": "0.4.0"})
    assert result.returncode == 0, result.stderr
    built = json.loads(result.stdout)
    stored = Path(built["location"])
    manifest = json.loads((stored.parent / "manifest.json").read_text())
    assert built["version"] == manifest["version"] == "0.4.0"
    assert manifest["sha256"] == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert manifest["platform"]["arch"] and manifest["built_by"]
    with tarfile.open(stored) as archive:
        tops = {name.split("/")[0] for name in archive.getnames()}
    assert {"bin", "lib", "releases"} <= tops and all(
        t in ("bin", "lib", "releases") or t.startswith("erts-") for t in tops
    )
    deployed = project.deploy("all", "0.4.0")
    assert deployed.returncode == 0, deployed.stderr
    assert set(project.running().values()) == {"0.4.0"}


def test_nodes_trust_pins_unknown_keys_and_refuses_a_changed_one(project: Project) -> None:
    known_hosts = project.fleet.known_hosts
    known_hosts.write_text("")
    try:
        trusted = project.edeliver("nodes", "trust", "all", "--yes")
        assert trusted.returncode == 0, trusted.stderr
        for node in project.fleet.nodes:
            assert node.host_key_fingerprint in trusted.stdout
        assert len(known_hosts.read_text().splitlines()) == len(project.fleet.nodes)
        assert project.edeliver("status", "all").returncode == 0
        project.fleet.rotate_host_key("node2")
        status = project.edeliver("status", "all")
        assert status.returncode == 3 and "node2" in status.stdout and "CHANGED" in status.stdout
        refused = project.edeliver("nodes", "trust", "all", "--yes")
        assert refused.returncode == 3 and "CHANGED" in refused.stderr
        assert project.fleet.node("node2").host_key_fingerprint not in known_hosts.read_text()
    finally:
        project.fleet.write_known_hosts()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_interrupts_with_exit_4_and_resume_finishes(
    project: Project, stop: signal.Signals
) -> None:
    """Ctrl-C or SIGTERM mid-rollout: the deployer records the interruption and exits 4, so
    that resume, without --force, completes at once."""
    project.ensure_all_on(NEXT)
    deploying = project.start("deploy", "waves", "--version", GOOD)
    _wait_for(project, lambda events: _reached(events, "waves", "node2", "installing"))
    deploying.send_signal(stop)
    _, err = deploying.communicate(timeout=120)
    assert deploying.returncode == 4, err
    assert "edeliver resume" in err
    events = project.events()
    assert events[-1]["event"] == "Interrupted"
    resumed = project.edeliver("resume", "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert project.running() == dict.fromkeys(project.fleet.names, GOOD)
