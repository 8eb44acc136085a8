"""The in-memory release store: the fake of the store ports, held to the truth by the same
contract suite as the local directory, S3 and the SSH store host."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edeliver.adapters.store.local_store import (
    place_of,
    refuse_another_build,
    stored_as,
    upgrade_place,
)
from edeliver.core.domain.errors import NotFoundError
from edeliver.core.domain.model import Artifact
from edeliver.core.domain.versions import version_key


class InMemoryReleaseStore:
    """Artifacts by app and version, listed in version order, like every store; upgrade packages
    kept below the version they upgrade to. `put` keeps the tarball's bytes in memory;
    `local_file` writes them to `cache`, the one thing a push needs on disk."""

    def __init__(self, artifacts: Sequence[Artifact] = (), cache: Path | None = None) -> None:
        self.artifacts: dict[tuple[str, ...], Artifact] = {}
        self.contents: dict[str, bytes] = {}  # by location, for what was `put`
        self.cache = cache
        for artifact in artifacts:
            self.add(artifact)

    def add(self, artifact: Artifact) -> None:
        self.artifacts[place_of(artifact)] = artifact

    async def versions(self, app: str) -> list[str]:
        releases = (place for place in self.artifacts if len(place) == 2)  # not upgrades
        return sorted((v for a, v in releases if a == app), key=version_key)

    async def artifact(self, app: str, version: str) -> Artifact:
        if (app, version) not in self.artifacts:
            known = ", ".join(await self.versions(app)) or "none"
            raise NotFoundError(f"version {version} of {app} is not in the store (it has: {known})")
        return self.artifacts[(app, version)]

    async def upgrade(self, app: str, from_version: str, version: str) -> Artifact | None:
        return self.artifacts.get(upgrade_place(app, from_version, version))

    async def put(
        self, tarball: Path, artifact: Artifact, extra: dict[str, Any] | None = None
    ) -> Artifact:
        """Keep the tarball's bytes; a version is immutable, as in every store."""
        place, data = place_of(artifact), tarball.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if place in self.artifacts:
            was = self.artifacts[place].sha256
            refuse_another_build(artifact.app, stored_as(artifact), "in memory", was, digest)
            return self.artifacts[place]
        location = f"memory:{'/'.join(place)}/{artifact.name}"
        stored = replace(artifact, sha256=digest, size=len(data), location=location)
        self.contents[location] = data
        self.add(stored)
        return stored

    async def remove(self, app: str, version: str) -> None:
        """The version and the upgrade packages kept below it."""
        for place in [p for p in self.artifacts if p[:2] == (app, version)]:
            self.contents.pop(self.artifacts.pop(place).location, None)

    async def local_file(self, artifact: Artifact) -> Path:
        """The stored bytes, written to the cache (a fake built without one has no disk)."""
        if self.cache is None or artifact.location not in self.contents:
            raise NotFoundError(f"{artifact.name} has no bytes in this in-memory store")
        target = self.cache / artifact.location.removeprefix("memory:")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.contents[artifact.location])
        return target
