"""The local directory store: manifests, version order, immutable versions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edeliver.adapters.local_store import LocalDirectoryStore, sha256_of
from edeliver.core.errors import NotFoundError, UsageError
from edeliver.core.model import Artifact


def tarball(directory: Path, content: bytes) -> Path:
    path = directory / f"t-{len(content)}.tar.gz"
    path.write_bytes(content)
    return path


def test_a_put_version_comes_back_with_its_checksum_in_version_order(tmp_path: Path) -> None:
    store = LocalDirectoryStore(tmp_path / "store")
    for version in ("0.10.0", "0.9.0"):
        store.put(tarball(tmp_path, version.encode()), Artifact("hello", version, "", 0))
    assert asyncio.run(store.versions("hello")) == ["0.9.0", "0.10.0"]
    found = asyncio.run(store.artifact("hello", "0.10.0"))
    assert found.sha256 == sha256_of(Path(found.location)) and found.size == 6
    with pytest.raises(NotFoundError, match=r"it has: 0\.9\.0, 0\.10\.0"):
        asyncio.run(store.artifact("hello", "1.0.0"))


def test_a_version_is_immutable_but_the_same_build_may_be_put_again(tmp_path: Path) -> None:
    """Nodes that have a version would never get another build of it: bump the version."""
    store = LocalDirectoryStore(tmp_path / "store")
    first = tarball(tmp_path, b"first build")
    store.put(first, Artifact("hello", "1.0.0", "", 0))
    store.put(first, Artifact("hello", "1.0.0", "", 0))
    with pytest.raises(
        UsageError, match=r"hello 1\.0\.0 is already in the store .* bump the version"
    ):
        store.put(tarball(tmp_path, b"second build!"), Artifact("hello", "1.0.0", "", 0))
