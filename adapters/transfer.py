"""How a release's bytes get from the store to a node: pushed by the deployer or pulled by it.

`push`: the deployer uploads over SFTP from a local file (a local store's own file, or a
verified copy fetched once into the local cache). `pull`: the node runs a fetch command the
store gives (curl of a presigned S3 URL, ssh to the store host) so the bytes never pass through
the deployer. Either way the node then checks the same sha256 before anything is unpacked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from edeliver.core.model import Artifact


class Delivery(Protocol):
    async def local_file(self, artifact: Artifact) -> Path:
        """The artifact on this machine, for an upload."""
        ...

    async def fetch_command(self, artifact: Artifact) -> str | None:
        """A node-side sh command writing the artifact to stdout, or None to upload it."""
        ...


class FetchingStore(Protocol):
    async def local_file(self, artifact: Artifact) -> Path: ...

    async def fetch_command(self, artifact: Artifact) -> str: ...


class FromLocation:
    """Push from `artifact.location`, a path on this machine (the local store's own files)."""

    async def local_file(self, artifact: Artifact) -> Path:
        return Path(artifact.location)

    async def fetch_command(self, artifact: Artifact) -> str | None:
        return None


class Push:
    """The deployer uploads a local copy of what the store holds."""

    def __init__(self, store: FetchingStore) -> None:
        self.store = store

    async def local_file(self, artifact: Artifact) -> Path:
        return await self.store.local_file(artifact)

    async def fetch_command(self, artifact: Artifact) -> str | None:
        return None


class Pull(Push):
    """Each node fetches the artifact straight from the store."""

    async def fetch_command(self, artifact: Artifact) -> str | None:
        return await self.store.fetch_command(artifact)
