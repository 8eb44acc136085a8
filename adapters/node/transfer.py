"""How a release's bytes get from the store to a node: pushed by the deployer or pulled by it.

`push`: the deployer uploads over SFTP from a local file (a local store's own file, or a
verified copy fetched once into the local cache). `pull`: the node runs a fetch command the
store gives (curl of a presigned S3 URL, ssh to the store host) so the bytes never pass through
the deployer. Either way the node then checks the same sha256 before anything is unpacked.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from edeliver.core.domain.errors import NodeError
from edeliver.core.domain.model import Artifact
from edeliver.core.ports import FetchingStore


def sha256_of(path: Path) -> str:
    """The file's sha256, read in blocks: what every store and every node checks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Delivery(Protocol):
    async def local_file(self, artifact: Artifact) -> Path:
        """The artifact on this machine, for an upload."""
        ...

    async def fetch_command(self, artifact: Artifact) -> str | None:
        """A node-side sh command writing the artifact to stdout, or None to upload it."""
        ...


class FromLocation:
    """Push from `artifact.location`, a path on this machine (the local store's own files)."""

    async def local_file(self, artifact: Artifact) -> Path:
        return Path(artifact.location)

    async def fetch_command(self, artifact: Artifact) -> str | None:
        return None


class Push:
    """The deployer uploads a local copy of what the store holds."""

    def __init__(self, store: FetchingStore[Path]) -> None:
        self.store = store

    async def local_file(self, artifact: Artifact) -> Path:
        return await self.store.local_file(artifact)

    async def fetch_command(self, artifact: Artifact) -> str | None:
        return None


class Pull(Push):
    """Each node fetches the artifact straight from the store."""

    async def fetch_command(self, artifact: Artifact) -> str | None:
        return await self.store.fetch_command(artifact)


class VerifiedCache:
    """Local copies of remote stores' artifacts for pushes: downloaded once however many nodes
    ask at once, and kept only when their sha256 is the manifest's."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[Path, asyncio.Lock] = {}

    async def get(
        self, artifact: Artifact, store: str, download: Callable[[Path], Awaitable[None]]
    ) -> Path:
        target = (
            self.root / store.replace("://", "/").replace(":", "/") / artifact.location.lstrip("/")
        )
        async with self._locks.setdefault(target, asyncio.Lock()):
            if target.is_file() and sha256_of(target) == artifact.sha256:
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            await download(partial)
            if (got := sha256_of(partial)) != artifact.sha256:
                partial.unlink()
                raise NodeError(
                    f"{store}: {artifact.name} is corrupted in the store: sha256 {got}, "
                    f"the manifest says {artifact.sha256}; refused before any node was changed"
                )
            os.replace(partial, target)
            return target
