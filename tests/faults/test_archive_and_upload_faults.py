"""Faults of archives and uploads on real sshd nodes, the releases in moto's S3: a tampered
archive (push and pull), a disk filling during the upload, a node partitioned mid-upload, and
`[commands]` with `#` and newlines through a deploy and a rollback.

After each: every node is asked what runs, where `current` points and whether it names a
complete release; the deployment's events load (`edeliver log`) and its environment's lock is
free (`edeliver history` shows it ended). One fleet of three nodes for the whole module.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.local.config_file import load_config
from edeliver.cli.composition import release_store
from edeliver.core.domain.model import Artifact
from tests.e2e.conftest import EDELIVER
from tests.support.faults_node import (
    Partition,
    listed,
    node_state,
    padded_release,
    small_disk,
    tampered_release,
)
from tests.support.hello_release import tarball
from tests.support.moto import CREDENTIALS
from tests.support.store_project import S3Project, s3_hello_project

OLD, NEW, TAMPERED = "0.1.0", "0.2.0", "0.3.0"
PADDING = 80 * 1024 * 1024  # makes NEW's upload last long enough to cut it midway
STEP_TIMEOUT = 20
CUT_OFF_STEP_TIMEOUT = 30
ENVIRONMENTS = f"""
[environments.one_for_one]
nodes = ["node1", "node2", "node3"]
strategy = "one_for_one"
fallback = "rollback"

[environments.partition]
nodes = ["node1", "node2", "node3"]
strategy = "one_for_one"
fallback = "ignore"
step_timeout = {STEP_TIMEOUT}

[environments.cut_off]
nodes = ["node1", "node2", "node3"]
strategy = "one_for_one"
fallback = "rollback"
step_timeout = {CUT_OFF_STEP_TIMEOUT}

[environments.awkward]
nodes = ["node1", "node2", "node3"]
strategy = "one_for_all"
fallback = "rollback"
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Project]:
    """Three nodes; in the store OLD, NEW padded to PADDING bytes, and TAMPERED: a release
    with a `bin/evil -> /tmp` link owned by "evil user", its manifest checksum matching."""
    root = tmp_path_factory.mktemp("archive-faults")
    with s3_hello_project(root, 3, "all", "max_parallel = 3", "faults", "hello") as project:
        with (project.directory / ".deliver/edeliver.toml").open("a") as config:
            config.write(ENVIRONMENTS)
        store = release_store(project.directory, load_config(project.directory))
        built = {
            OLD: tarball(OLD, "good"),
            NEW: padded_release(tarball(NEW, "good"), root / "padded.tar.gz", PADDING),
            TAMPERED: tampered_release(tarball(TAMPERED, "broken"), root / "tampered.tar.gz"),
        }
        with mock.patch.dict(os.environ, CREDENTIALS):  # as a CI builder would put them
            for version, path in built.items():
                asyncio.run(
                    store.put(path, Artifact("hello", version, "", 0, platform=local_platform()))
                )
        yield project


@pytest.fixture
def on_old(lab: S3Project) -> S3Project:
    """Every node runs OLD, pushed; no upload of TAMPERED nor any partial left on a node
    (NEW's verified uploads stay: re-sending them would only make the tests slower)."""
    lab.transfer("push")
    lab.ensure_all_on(OLD)
    for node in lab.fleet.nodes:
        uploads = node.root / ".edeliver/uploads"
        for left in [*uploads.glob(f"hello-{TAMPERED}*"), *uploads.glob("*.partial")]:
            left.unlink()
    return lab


def deployed(project: S3Project, environment: str, version: str) -> dict[str, Any]:
    """`edeliver deploy --json`: its summary, after checking it printed no traceback."""
    result = project.edeliver("deploy", environment, "--version", version, "--json")
    for noise in ("Traceback", "Future exception was never retrieved"):
        assert noise not in result.stderr, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    summary["exit"] = result.returncode
    return summary


def assert_settled(project: S3Project, summary: dict[str, Any], on: dict[str, str]) -> None:
    """Each node runs exactly the version `on` names, from a complete `current`; the
    deployment's events load; its environment's lock is free."""
    for node in project.fleet.nodes:
        state = node_state(project.fleet, node)
        assert (state.current, state.complete, state.running) == (
            on[node.name], True, (on[node.name],)
        ), (node.name, summary["nodes"])  # fmt: skip
    assert project.events(summary["id"]), "the deployment's events do not load"
    history = project.edeliver("history", summary["environment"], "--json")
    rows = {row["id"]: row for row in json.loads(history.stdout)["deployments"]}
    assert rows[summary["id"]]["ended_at"] is not None, "the environment is still locked"


def uploads_of(project: S3Project, version: str) -> dict[str, list[str]]:
    return {
        node.name: sorted(p.name for p in (node.root / ".edeliver/uploads").glob(f"*{version}*"))
        for node in project.fleet.nodes
    }


def test_a_tampered_archive_is_refused_before_any_upload_when_pushed(on_old: S3Project) -> None:
    """Push: the deployer reads the archive first; every node fails naming the link and the
    version, no byte of it reached a node, all still run OLD."""
    summary = deployed(on_old, "one_for_one", TAMPERED)
    assert summary["exit"] == 1
    for node in summary["nodes"].values():
        assert "symlink 'bin/evil' points outside" in node["reason"]
        assert (
            f"(version {TAMPERED})" in node["reason"] and "nothing was uploaded" in node["reason"]
        )
    assert uploads_of(on_old, TAMPERED) == {n: [] for n in on_old.fleet.names}
    assert_settled(on_old, summary, dict.fromkeys(on_old.fleet.names, OLD))


def test_a_tampered_archive_pulled_by_the_nodes_is_refused_and_removed_there(
    on_old: S3Project,
) -> None:
    """Pull: each node fetches it (its checksum matches), lists it by numbers, refuses it
    despite the owner name with a space, deletes it; nothing is unpacked or activated."""
    on_old.transfer("pull")
    summary = deployed(on_old, "one_for_one", TAMPERED)
    assert summary["exit"] == 1
    for node in summary["nodes"].values():
        assert "symlink 'bin/evil' points outside" in node["reason"]
        assert "the upload was deleted" in node["reason"]
    assert uploads_of(on_old, TAMPERED) == {n: [] for n in on_old.fleet.names}
    for node in on_old.fleet.nodes:
        assert not list((node.root / "releases").glob(f"*{TAMPERED}*"))
    assert_settled(on_old, summary, dict.fromkeys(on_old.fleet.names, OLD))


@pytest.mark.parametrize("mode", ["push", "pull"])
def test_a_disk_filling_during_the_upload_fails_that_node_and_removes_the_partial(
    on_old: S3Project, mode: str
) -> None:
    """node1's uploads on an 8 MiB disk, pushed over SFTP or pulled by curl: it fails saying
    the disk at the uploads dir is full, the partial is gone, one_for_one rolls it back to
    OLD; the others end on NEW."""
    on_old.transfer(mode)
    node1 = on_old.fleet.node("node1")
    with small_disk(on_old.fleet, node1, ".edeliver/uploads", "8m") as uploads:
        summary = deployed(on_old, "one_for_one", NEW)
        left = listed(on_old.fleet, node1, uploads)
    reason = summary["nodes"]["node1"]["reason"]
    assert re.search(r"the disk at \S+/\.edeliver/uploads is full \(\d+ bytes free", reason)
    assert "the partial upload was removed" in reason
    assert left == [], left  # the partial of NEW is gone from the full disk
    assert summary["exit"] == 1 and summary["nodes"]["node1"]["state"] == "rolled_back"
    assert_settled(on_old, summary, {"node1": OLD, "node2": NEW, "node3": NEW})


def test_a_node_partitioned_mid_upload_fails_at_the_step_timeout(on_old: S3Project) -> None:
    """node1's sshd port dropped once its partial upload grows: it fails "timed out after
    20s" (not a keepalive a minute later), no traceback; fallback ignore lets the others end
    on NEW; once healed, node1 still runs OLD untouched."""
    node1 = on_old.fleet.node("node1")
    (node1.root / f".edeliver/uploads/hello-{NEW}.tar.gz").unlink(missing_ok=True)
    partial = node1.root / f".edeliver/uploads/hello-{NEW}.tar.gz.partial"
    with Partition(node1) as partition:
        deploying = deploying_in_background(on_old, "partition")
        wait_while(deploying, lambda: partial.exists() and partial.stat().st_size > 0, "upload")
        partition.cut()
        cut_size = partial.stat().st_size
        summary = quiet_summary(deploying)
    assert 0 < cut_size < PADDING, "the upload ended before the partition"
    assert summary["nodes"]["node1"] == {
        "state": "failed", "reason": f"prepare: timed out after {STEP_TIMEOUT}s"
    }  # fmt: skip
    failed_after = seconds_to_fail(on_old, summary["id"], "node1")
    assert failed_after < STEP_TIMEOUT + 5, f"failed {failed_after:.1f}s after preparing began"
    summary["environment"] = "partition"
    assert_settled(on_old, summary, {"node1": OLD, "node2": NEW, "node3": NEW})


def test_a_node_partitioned_mid_activate_is_rolled_back_once_healed(on_old: S3Project) -> None:
    """node1 cut off the network right after its switch, for longer than its activate step
    may take: the node fails at the step timeout, and its rollback, once the partition heals,
    puts OLD back; one_for_one leaves the others on NEW."""
    node1 = on_old.fleet.node("node1")
    with Partition(node1) as partition:
        deploying = deploying_in_background(on_old, "cut_off")
        switched = f"releases/{NEW}"
        wait_while(deploying, lambda: link_of(node1.root / "current") == switched, "switch")
        partition.cut()
        time.sleep(CUT_OFF_STEP_TIMEOUT + 3)  # the fault itself: a partition this long
        partition.heal()
        summary = quiet_summary(deploying)
    assert summary["nodes"]["node1"]["state"] == "rolled_back", summary["nodes"]
    summary["environment"] = "cut_off"
    assert_settled(on_old, summary, {"node1": OLD, "node2": NEW, "node3": NEW})


def deploying_in_background(project: S3Project, environment: str) -> subprocess.Popen[str]:
    """`edeliver deploy ENVIRONMENT --version NEW --json`, started and left running."""
    return subprocess.Popen(
        [*EDELIVER, "-C", str(project.directory), "deploy", environment, "--version", NEW,
         "--json"],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, **CREDENTIALS},
    )  # fmt: skip


def wait_while(deploying: subprocess.Popen[str], seen: Callable[[], bool], what: str) -> None:
    """Poll until `seen()`, failing if the deploy ends first or nothing is seen in 3 min."""
    deadline = time.monotonic() + 180
    while not seen():
        assert deploying.poll() is None and time.monotonic() < deadline, f"no {what} seen"
        time.sleep(0.01)


def quiet_summary(deploying: subprocess.Popen[str]) -> dict[str, Any]:
    """The deploy's JSON summary, once it ended without a traceback on stderr."""
    stdout, stderr = deploying.communicate(timeout=240)
    for noise in ("Traceback", "Future exception was never retrieved"):
        assert noise not in stderr, stderr
    summary: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return summary


def link_of(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def seconds_to_fail(project: S3Project, deployment: str, node: str) -> float:
    """From the node's `start` (its prepare step begins) to its `fail`, as recorded."""
    times = {
        event["trigger"]: datetime.fromisoformat(event["at"])
        for event in project.events(deployment)
        if event["event"] == "NodeTransitioned" and event["node"] == node
    }
    return (times["fail"] - times["start"]).total_seconds()


def test_commands_with_comments_and_newlines_deploy_and_roll_back(
    on_old: S3Project,
) -> None:
    """`[commands]` whose values hold `#`, newlines and quotes: NEW deploys everywhere, then
    a failed boot of it on node3 rolls every node back to OLD with the same commands."""
    config = on_old.directory / ".deliver/edeliver.toml"
    before = config.read_text()
    config.write_text(
        before.replace(
            "[store]",
            "[commands]\n"
            "stop = '''\n# stop it (it's \"ours\") }\nbin/{app} stop # done\n'''\n"
            "health = '''\ntest -f tmp/{app}.status # up? )\n'''\n\n[store]",
            1,
        )
    )
    try:
        summary = deployed(on_old, "awkward", NEW)
        assert summary["exit"] == 0, summary
        assert_settled(on_old, summary, dict.fromkeys(on_old.fleet.names, NEW))
        on_old.ensure_all_on(OLD)
        on_old.refuse_on("node3", NEW)
        rolled = deployed(on_old, "awkward", NEW)
        assert rolled["exit"] == 1
        assert {n["state"] for n in rolled["nodes"].values()} == {"rolled_back"}
        assert_settled(on_old, rolled, dict.fromkeys(on_old.fleet.names, OLD))
    finally:
        config.write_text(before)
        (on_old.fleet.node("node3").root / "shared/hello.refuse").unlink(missing_ok=True)
