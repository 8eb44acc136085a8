"""Releases kept on a store host over SSH (a real sshd node), deployed to 3 real nodes.

In pull mode each node runs `ssh ... cat` to the store host with its own key, checking the store
host's key the deployer verified; in push mode the deployer uploads a verified local copy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edeliver.adapters.local.config_file import load_config
from edeliver.adapters.node.ssh import AsyncsshNodeShells
from edeliver.adapters.store.local_store import StoreUnreachable
from edeliver.adapters.store.ssh_store import SshReleaseStore
from edeliver.cli.composition import release_store
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.model import Artifact
from tests.e2e.conftest import GOOD, NEXT
from tests.support.moto import free_port
from tests.support.store_project import STORE_PATH, StoreHostProject, store_host_hello_project


@pytest.fixture(scope="module")
def store_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreHostProject]:
    root = tmp_path_factory.mktemp("ssh-store")
    with store_host_hello_project(root, 3, "all", "max_parallel = 3", "pull") as project:
        project.put(GOOD)
        project.put(NEXT)
        yield project


def test_the_store_host_holds_each_version_with_its_manifest(
    store_project: StoreHostProject,
) -> None:
    assert store_project.stored() == {GOOD, NEXT}
    result = store_project.edeliver("releases", "--json")
    assert result.returncode == 0, result.stderr
    assert [r["version"] for r in json.loads(result.stdout)["releases"]] == [GOOD, NEXT]


def test_nodes_pull_from_the_store_host_over_ssh(store_project: StoreHostProject) -> None:
    """Pull: the deployer never holds the tarball; every node runs the release."""
    result = store_project.deploy("all", GOOD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert store_project.running() == dict.fromkeys(store_project.fleet.names, GOOD)
    assert store_project.cached() == []
    known = store_project.fleet.nodes[0].root / ".edeliver/store_known_hosts"
    assert known.read_text().strip() == store_project.store_fleet.nodes[0].known_hosts_line


def test_a_push_from_the_store_host_uploads_a_verified_local_copy(
    store_project: StoreHostProject,
) -> None:
    store_project.push_runs_one_verified_copy(GOOD, NEXT)


def test_an_unreachable_store_host_is_one_clear_error(tmp_path: Path) -> None:
    host = NodeConfig("store", "127.0.0.1", STORE_PATH, free_port(), "nobody")
    store = SshReleaseStore(host, tmp_path, AsyncsshNodeShells(known_hosts=str(tmp_path / "kh")))
    with pytest.raises(
        StoreUnreachable, match=r"store nobody@127\.0\.0\.1:/srv/edeliver-store: .*cannot connect"
    ):
        asyncio.run(store.versions("hello"))


def test_the_store_host_keeps_upgrade_packages_below_their_version(
    store_project: StoreHostProject, tmp_path: Path
) -> None:
    """Found by from and to, not listed as a version, removed with the version it upgrades to."""
    store = release_store(store_project.directory, load_config(store_project.directory))
    later = "0.9.0"
    (tmp_path / "release.tar.gz").write_bytes(b"release")
    asyncio.run(store.put(tmp_path / "release.tar.gz", Artifact("hello", later, "", 0)))
    (tmp_path / "relup.tar.gz").write_bytes(b"relup")
    package = Artifact("hello", later, "", 0, kind="upgrade", from_versions=(GOOD,))
    stored = asyncio.run(store.put(tmp_path / "relup.tar.gz", package))
    assert stored.location == f"{STORE_PATH}/hello/{later}/upgrades/{GOOD}/hello-{later}.tar.gz"
    assert asyncio.run(store.upgrade("hello", GOOD, later)) == stored
    assert asyncio.run(store.upgrade("hello", NEXT, later)) is None
    copy = asyncio.run(store.local_file(stored))
    assert copy.read_bytes() == b"relup"
    copy.unlink()  # the other tests count what the deployer cached
    assert store_project.stored() == {GOOD, NEXT, later}
    asyncio.run(store.remove("hello", later))
    assert asyncio.run(store.upgrade("hello", GOOD, later)) is None
    assert not (store_project.store_fleet.nodes[0].root / "hello" / later).exists()
