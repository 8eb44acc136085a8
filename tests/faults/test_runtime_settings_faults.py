"""Faults of the app's runtime settings on real sshd nodes: a `from_file` secret missing on one
node, and nodes keeping different cookies for one environment.

After each: every node is asked what runs, where `current` points and whether it names a
complete release; the deployment's events load (`edeliver log`) and its environment's lock is
free (`edeliver history` shows it ended). One fleet of three nodes for the whole module.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from collections.abc import Iterator
from typing import Any

import pytest

from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.cli.demo import prepare_project
from edeliver.core.domain.model import Artifact
from tests.e2e.conftest import Project
from tests.support.faults_node import node_state
from tests.support.hello_release import tarball
from tests.support.nodes import ssh

OLD, NEW = "0.1.0", "0.2.0"
ENVIRONMENTS = """
[environments.files]
nodes = ["node1", "node2", "node3"]
strategy = "one_for_all"
fallback = "rollback"
[environments.files.env]
HELLO_API_KEY = { from_file = "hello_api_key" }

[environments.cookies]
nodes = ["node1", "node2", "node3"]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """Three nodes, hello OLD and NEW in the store, every node running OLD with its key file."""
    root = tmp_path_factory.mktemp("settings-faults")
    with LocalFleet(root / "fleet", 3) as fleet:
        directory = prepare_project(root, fleet, "all", "")
        with (directory / ".deliver/edeliver.toml").open("a") as config:
            config.write(ENVIRONMENTS)
        store = LocalDirectoryStore(directory / ".deliver/releases")
        for version in (OLD, NEW):
            asyncio.run(
                store.put(
                    tarball(version), Artifact("hello", version, "", 0, platform=local_platform())
                )
            )
        project = Project(directory, fleet)
        for node in fleet.nodes:
            _on(fleet, node, 'mkdir -p "$P/shared" && echo key-of-node >"$P/shared/hello_api_key"')
        first = project.deploy("files", OLD)
        assert first.returncode == 0, first.stdout + first.stderr
        yield project


def _on(fleet: LocalFleet, node: FleetNode, command: str) -> None:
    said = ssh(fleet, node, f"P={shlex.quote(node.path)}; {command}")
    assert said.returncode == 0, said.stderr


def _all_on(project: Project, version: str) -> None:
    """Each node: current names a complete `version`, and one VM runs it."""
    for node in project.fleet.nodes:
        state = node_state(project.fleet, node)
        assert (state.current, state.complete, state.running) == (version, True, (version,)), (
            node.name,
            state,
        )


def _ended_and_logged(project: Project) -> dict[str, Any]:
    """The last deployment's events load, and it ended: its environment is free."""
    assert project.events(), "its events load"
    history = project.edeliver("history", "--json")
    assert history.returncode == 0, history.stderr
    last = json.loads(history.stdout)["deployments"][-1]
    assert last["outcome"] is not None, last
    return dict(last)


def test_a_file_secret_missing_on_one_node_fails_it_before_its_switch_and_all_roll_back(
    lab: Project,
) -> None:
    """node3 lacks shared/hello_api_key: it fails at install, naming the file and the setting;
    one_for_all + rollback leaves every node on the old release."""
    node3 = lab.fleet.node("node3")
    _on(lab.fleet, node3, 'rm "$P/shared/hello_api_key"')
    try:
        result = lab.deploy("files", NEW)
    finally:
        _on(lab.fleet, node3, 'echo key-of-node >"$P/shared/hello_api_key"')
    assert result.returncode == 1, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (
        "shared/hello_api_key (for HELLO_API_KEY) is missing or unreadable"
        in summary["nodes"]["node3"]["reason"]
    ), summary
    _all_on(lab, OLD)
    assert _ended_and_logged(lab)["outcome"] == "failed"


def test_nodes_keeping_different_cookies_for_an_environment_refuse_the_deployment(
    lab: Project,
) -> None:
    """Exit 3, one line naming both nodes whose cookies differ, no cookie shown; nothing changed."""
    cookie = "shared/.edeliver/cookie"
    kept = (lab.fleet.nodes[0].root / cookie).read_text()
    for node, other in zip(lab.fleet.nodes[:2], ("a" * 64, "b" * 64), strict=True):
        _on(lab.fleet, node, f'echo {other} >"$P/{cookie}"')
    try:
        result = lab.deploy("cookies", NEW)
    finally:
        for node in lab.fleet.nodes[:2]:
            _on(lab.fleet, node, f'echo {kept.strip()} >"$P/{cookie}"')
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    # all three nodes keep different cookies: the first two to answer are named
    named = re.search(r"(\w+) and (\w+) keep different Erlang cookies \(shared/", lines[0])
    assert named and set(named.groups()) < set(lab.fleet.names), lines[0]
    assert all(c not in result.stderr for c in ("a" * 64, "b" * 64, kept.strip()))
    _all_on(lab, OLD)
    assert _ended_and_logged(lab)["outcome"] == "refused"
