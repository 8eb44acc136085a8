"""The local directory store; what every store does: tests/contract/test_release_store_contract."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edeliver.adapters.node.transfer import sha256_of
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.core.domain.errors import NotFoundError
from edeliver.core.domain.model import Artifact


def tarball(directory: Path, content: bytes) -> Path:
    path = directory / f"t-{len(content)}.tar.gz"
    path.write_bytes(content)
    return path


def test_a_put_version_comes_back_with_its_checksum_in_version_order(tmp_path: Path) -> None:
    store = LocalDirectoryStore(tmp_path / "store")
    for version in ("0.10.0", "0.9.0"):
        asyncio.run(
            store.put(tarball(tmp_path, version.encode()), Artifact("hello", version, "", 0))
        )
    assert asyncio.run(store.versions("hello")) == ["0.9.0", "0.10.0"]
    found = asyncio.run(store.artifact("hello", "0.10.0"))
    assert found.sha256 == sha256_of(Path(found.location)) and found.size == 6
    with pytest.raises(NotFoundError, match=r"it has: 0\.9\.0, 0\.10\.0"):
        asyncio.run(store.artifact("hello", "1.0.0"))
