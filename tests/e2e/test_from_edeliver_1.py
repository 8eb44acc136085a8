"""An edeliver 1.x user moves over unchanged: a `.deliver/config` whose hosts are `~/.ssh/config`
aliases with their own ports and keys, behind a bastion, deploys with 1.x's command line; then
again after `migrate-config --write`, with the same hook marks."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.legacy_project import LegacyProject, legacy_project


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LegacyProject]:
    with legacy_project(tmp_path_factory.mktemp("legacy")) as project:
        yield project


def one_deploy(version: str) -> list[str]:
    """The marks one deploy leaves on a node: post_extract, pre_start, post_start hooks."""
    return [f"extracted-{version}", f"starting-{version}", version]


def marks(legacy: LegacyProject, name: str = "legacy-marks") -> list[list[str]]:
    """What the hooks' `__remote` wrote on each app node, read from the node's own files."""
    files = [node.root / name for node in legacy.app_nodes]
    return [f.read_text().split() if f.exists() else [] for f in files]


def test_a_1x_project_deploys_with_its_config_alone_and_then_after_migrating(
    legacy: LegacyProject,
) -> None:
    """1.x's `deploy release to production --version=` reaches the aliases through the bastion,
    shows the hooks' status lines, a hook's `$DELIVER_TO/$APP/bin/$APP rpc` answers from the
    running release, and migrate-config --write keeps every node and mark."""
    first = legacy.edeliver("deploy", "release", "to", "production", "--version=0.1.0")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "in 2.0: edeliver deploy production --version=0.1.0" in first.stderr
    assert "-----> starting hello on web1" in first.stdout.splitlines()
    assert "-----> starting hello on web2" in first.stdout.splitlines()
    assert [legacy.node_state(a) for a in ("web1", "web2")] == [
        ("0.1.0", "releases/0.1.0", True)
    ] * 2
    assert marks(legacy) == [one_deploy("0.1.0")] * 2  # the hooks in 1.x's order
    assert marks(legacy, "legacy-rpc") == [["0.1.0"], ["0.1.0"]]  # $DELIVER_TO/$APP/bin/$APP rpc

    migrated = legacy.edeliver("migrate-config", "--write")
    assert migrated.returncode == 0, migrated.stderr
    toml = (legacy.directory / ".deliver/edeliver.toml").read_text()
    web2 = legacy.fleet.node("node3")
    assert f"port = {web2.port}" in toml and 'identity_file = "~/.ssh/web2_key"' in toml
    assert "ignored: USING_DISTILLERY='false', because" in migrated.stderr

    second = legacy.edeliver("deploy", "production", "--version", "0.2.0")
    assert second.returncode == 0, second.stdout + second.stderr
    assert [legacy.node_state(a) for a in ("web1", "web2")] == [
        ("0.2.0", "releases/0.2.0", True)
    ] * 2
    assert marks(legacy) == [one_deploy("0.1.0") + one_deploy("0.2.0")] * 2
    assert marks(legacy, "legacy-rpc") == [["0.1.0", "0.2.0"], ["0.1.0", "0.2.0"]]
    history = legacy.edeliver("history", "production", "--json")
    outcomes = [row["outcome"] for row in json.loads(history.stdout)["deployments"]]
    assert history.returncode == 0 and outcomes.count("succeeded") == 2, history.stdout


def test_plan_shows_each_nodes_resolved_address_via_the_bastion(legacy: LegacyProject) -> None:
    """`plan` names user@host:port of every alias and the jump host it goes through."""
    planned = legacy.edeliver("plan", "production")
    assert planned.returncode == 0, planned.stderr
    bastion = legacy.fleet.node("node1")
    via = f"via {bastion.user}@{bastion.host}:{bastion.port}"
    for node in legacy.app_nodes:
        assert f"{node.user}@{node.host}:{node.port} {via}" in planned.stdout


def test_status_reaches_every_alias_and_shows_its_route(legacy: LegacyProject) -> None:
    """`status` reaches both aliases through the bastion and shows each one's resolved route."""
    status = legacy.edeliver("status", "production", "--json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)["nodes"]
    assert [row["reachable"] for row in rows] == [True, True]
    assert all(" via " in row["address"] for row in rows)


def test_nodes_trust_pins_the_bastions_key_then_each_nodes(legacy: LegacyProject) -> None:
    """With nothing pinned, `nodes trust --yes` pins the bastion's key (once, for both nodes
    behind it), then each node's, reached through it; the nodes are reachable again."""
    legacy.known_hosts.write_text("")
    try:
        trusted = legacy.edeliver("nodes", "trust", "production", "--yes")
        assert trusted.returncode == 0, trusted.stdout + trusted.stderr
        bastion = legacy.fleet.node("node1")
        assert trusted.stdout.count(f"new key {bastion.host_key_fingerprint}") == 1
        assert f"jump host bastion of production1 new key {bastion.host_key_fingerprint}" in (
            trusted.stdout
        )
        for node in legacy.app_nodes:
            assert f"new key {node.host_key_fingerprint}" in trusted.stdout
        pinned = set(legacy.known_hosts.read_text().splitlines())
        assert pinned == {node.known_hosts_line for node in legacy.fleet.nodes}
        status = legacy.edeliver("status", "production", "--json")
        assert status.returncode == 0, status.stderr
    finally:
        legacy.trust_all()


BUILD_HOST_CONFIG = """
BUILD_HOST="web1"
BUILD_AT="/srv/hello/builds"
AUTO_VERSION=commit-count
pre_erlang_clean_compile() {
  status "compiling on $HOSTS"
  __sync_remote "cd $BUILD_AT && test -f mix.exs && echo compiled-here >> /srv/hello/build-marks"
}
"""


def test_a_1x_build_host_builds_and_its_hooks_reach_it(legacy: LegacyProject) -> None:
    """`build release` with BUILD_HOST (an alias behind the bastion) builds there, versioned by
    AUTO_VERSION; the build hook's `__sync_remote` runs in the build's directory on it and its
    status line shows."""
    config = legacy.directory / ".deliver/config"
    original = config.read_text()
    config.write_text(original + BUILD_HOST_CONFIG)
    (legacy.directory / ".deliver/edeliver.toml").unlink(missing_ok=True)  # 1.x config alone
    for command in (
        ["init", "-q", "-b", "master"],
        ["add", "-A"],
        ["-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "-qm", "1.x"],
    ):
        subprocess.run(["git", "-C", str(legacy.directory), *command], check=True)
    try:
        built = legacy.edeliver("build", "release", timeout=600)
    finally:
        config.write_text(original)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "in 2.0: edeliver build" in built.stderr
    assert "-----> compiling on web1" in built.stderr.splitlines()
    assert "built hello 0.1.0+1 " in built.stdout
    marks = legacy.fleet.node("node2").root / "build-marks"
    assert marks.read_text().split() == ["compiled-here"]
