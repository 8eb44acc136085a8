"""One contract for every store adapter that can be written to: the local directory, S3 (moto's
server over HTTP), a store host over SSH (a real sshd node) and the in-memory fake the unit tests
use. Listing order, missing versions, immutability, removal, manifests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.ssh import AsyncsshNodeShells
from edeliver.adapters.node.transfer import sha256_of
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.adapters.store.memory_store import InMemoryReleaseStore
from edeliver.adapters.store.s3_store import S3ReleaseStore
from edeliver.adapters.store.ssh_store import SshReleaseStore
from edeliver.cli.composition import Store
from edeliver.core.domain.errors import NotFoundError, UsageError
from edeliver.core.domain.model import Artifact, Platform
from tests.contract.conftest import node_config
from tests.support.moto import CREDENTIALS, moto_server, s3_client


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        s3_client(url).create_bucket(Bucket="contract")
        yield url


@pytest.fixture(scope="module")
def store_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """One real sshd node for the module; each test keeps its store in a directory of its own."""
    with LocalFleet(tmp_path_factory.mktemp("store-host"), 1, name_prefix="store") as fleet:
        yield fleet


def ssh_store(fleet: LocalFleet, tmp_path: Path) -> SshReleaseStore:
    node = fleet.nodes[0]
    host = node_config(fleet, node, f"{node.path}/{tmp_path.name}")
    shells = AsyncsshNodeShells(known_hosts=str(fleet.known_hosts))
    return SshReleaseStore(host, tmp_path / "cache", shells)


@pytest.fixture(params=["local", "s3", "ssh", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    if request.param == "local":
        return LocalDirectoryStore(tmp_path / "store")
    if request.param == "ssh":
        return ssh_store(request.getfixturevalue("store_host"), tmp_path)
    if request.param == "memory":
        (tmp_path / "cache").mkdir()
        return InMemoryReleaseStore(cache=tmp_path / "cache")
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    url = request.getfixturevalue("endpoint")
    return S3ReleaseStore("contract", tmp_path.name, tmp_path / "cache", endpoint_url=url)


def tarball(directory: Path, content: bytes) -> Path:
    path = directory / f"t-{len(content)}.tar.gz"
    path.write_bytes(content)
    return path


def test_versions_come_back_in_version_order(store: Store, tmp_path: Path) -> None:
    for version in ("0.10.0", "0.9.0", "0.9.1"):
        asyncio.run(
            store.put(tarball(tmp_path, version.encode()), Artifact("hello", version, "", 0))
        )
    assert asyncio.run(store.versions("hello")) == ["0.9.0", "0.9.1", "0.10.0"]
    assert asyncio.run(store.versions("other")) == []


def test_a_stored_artifact_keeps_its_manifest_fields(store: Store, tmp_path: Path) -> None:
    # (Upgrade packages are kept apart, per from-version: the tests at the end of this file.)
    platform = Platform("linux", "x86_64", "glibc", "2.36")
    built = Artifact(
        "hello", "1.0.0", "", 0, platform=platform, from_versions=("0.9.0",),
        git_revision="abc", built_at="2026-01-01T00:00:00+00:00", erts="13.1.5", otp="25",
        elixir="1.14.0",
    )  # fmt: skip
    stored = asyncio.run(store.put(tarball(tmp_path, b"release"), built))
    found = asyncio.run(store.artifact("hello", "1.0.0"))
    assert found == stored and found.sha256 == sha256_of(tmp_path / "t-7.tar.gz")
    assert (found.size, found.kind, found.from_versions, found.otp) == (
        7,
        "release",
        ("0.9.0",),
        "25",
    )


def test_a_missing_version_names_the_versions_there_are(store: Store, tmp_path: Path) -> None:
    asyncio.run(store.put(tarball(tmp_path, b"one"), Artifact("hello", "0.1.0", "", 0)))
    with pytest.raises(
        NotFoundError, match=r"version 9\.9\.9 of hello is not in the store .*\(it has: 0\.1\.0\)"
    ):
        asyncio.run(store.artifact("hello", "9.9.9"))


def test_a_version_is_immutable_but_the_same_build_may_be_put_again(
    store: Store, tmp_path: Path
) -> None:
    """Nodes that have a version would never get another build of it: bump the version."""
    first = tarball(tmp_path, b"first build")
    asyncio.run(store.put(first, Artifact("hello", "1.0.0", "", 0)))
    asyncio.run(store.put(first, Artifact("hello", "1.0.0", "", 0)))
    with pytest.raises(
        UsageError, match=r"hello 1\.0\.0 is already in the store .* bump the version"
    ):
        asyncio.run(
            store.put(tarball(tmp_path, b"second build!"), Artifact("hello", "1.0.0", "", 0))
        )


def test_a_removed_version_is_gone(store: Store, tmp_path: Path) -> None:
    for version in ("0.1.0", "0.2.0"):
        asyncio.run(
            store.put(tarball(tmp_path, version.encode()), Artifact("hello", version, "", 0))
        )
    asyncio.run(store.remove("hello", "0.1.0"))
    assert asyncio.run(store.versions("hello")) == ["0.2.0"]
    with pytest.raises(NotFoundError):
        asyncio.run(store.artifact("hello", "0.1.0"))


def test_a_local_copy_has_the_stored_bytes(store: Store, tmp_path: Path) -> None:
    stored = asyncio.run(
        store.put(tarball(tmp_path, b"release bytes"), Artifact("hello", "0.1.0", "", 0))
    )
    local = asyncio.run(store.local_file(stored))
    assert local.read_bytes() == b"release bytes"


# -- hot-upgrade packages: kept below the version they upgrade to, one per from-version ---------


def upgrade_package(to: str, from_version: str) -> Artifact:
    return Artifact("hello", to, "", 0, kind="upgrade", from_versions=(from_version,))


def test_an_upgrade_package_is_found_by_its_from_and_to_versions(
    store: Store, tmp_path: Path
) -> None:
    for version in ("0.1.0", "0.2.0"):
        asyncio.run(
            store.put(tarball(tmp_path, version.encode()), Artifact("hello", version, "", 0))
        )
    stored = asyncio.run(
        store.put(tarball(tmp_path, b"relup 0.1.0 -> 0.2.0"), upgrade_package("0.2.0", "0.1.0"))
    )
    found = asyncio.run(store.upgrade("hello", "0.1.0", "0.2.0"))
    assert found == stored and (found.kind, found.from_versions) == ("upgrade", ("0.1.0",))
    assert asyncio.run(store.local_file(found)).read_bytes() == b"relup 0.1.0 -> 0.2.0"
    assert asyncio.run(store.upgrade("hello", "0.0.9", "0.2.0")) is None
    assert asyncio.run(store.upgrade("hello", "0.1.0", "0.3.0")) is None
    # The package is no version of its own, and leaves the release it upgrades to as it was.
    assert asyncio.run(store.versions("hello")) == ["0.1.0", "0.2.0"]
    release = asyncio.run(store.artifact("hello", "0.2.0"))
    assert (release.kind, release.size) == ("release", 5)


def test_an_upgrade_package_is_immutable_and_named_by_its_from_version(
    store: Store, tmp_path: Path
) -> None:
    first = tarball(tmp_path, b"first relup")
    asyncio.run(store.put(first, upgrade_package("0.2.0", "0.1.0")))
    asyncio.run(store.put(first, upgrade_package("0.2.0", "0.1.0")))
    with pytest.raises(
        UsageError, match=r"hello 0\.2\.0 \(upgrade from 0\.1\.0\) is already in the store"
    ):
        asyncio.run(
            store.put(tarball(tmp_path, b"another relup!"), upgrade_package("0.2.0", "0.1.0"))
        )
    with pytest.raises(UsageError, match=r"from_versions must name one version"):
        asyncio.run(store.put(first, replace(upgrade_package("0.2.0", "0.1.0"), from_versions=())))


def test_removing_a_version_removes_its_upgrade_packages(store: Store, tmp_path: Path) -> None:
    for version in ("0.1.0", "0.2.0"):
        asyncio.run(
            store.put(tarball(tmp_path, version.encode()), Artifact("hello", version, "", 0))
        )
    asyncio.run(store.put(tarball(tmp_path, b"relup"), upgrade_package("0.2.0", "0.1.0")))
    asyncio.run(store.remove("hello", "0.2.0"))
    assert asyncio.run(store.upgrade("hello", "0.1.0", "0.2.0")) is None
    assert asyncio.run(store.versions("hello")) == ["0.1.0"]
