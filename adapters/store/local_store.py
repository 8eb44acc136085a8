"""The embedded default store: a local directory of releases with a manifest per version.

Layout: `<root>/<app>/<version>/<app>-<version>.tar.gz` beside `manifest.json`. A version is
listed only once its manifest exists, and the manifest is written last, so a store never shows
a half-copied release. A hot-upgrade package from FROM to a version lives below it, in
`<root>/<app>/<version>/upgrades/<FROM>/` (kind "upgrade", `from_versions` = (FROM,)).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from edeliver.adapters.node.transfer import sha256_of
from edeliver.adapters.store.manifest_check import checked_manifest
from edeliver.core.domain.errors import EdeliverError, NotFoundError, UsageError
from edeliver.core.domain.model import Artifact, Platform
from edeliver.core.domain.versions import version_key

MANIFEST = "manifest.json"
UPGRADES = "upgrades"


class StoreUnreachable(EdeliverError):
    """A remote store's endpoint or host could not be reached."""


class LocalDirectoryStore:
    """Releases in a directory on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def versions(self, app: str) -> list[str]:
        base = self.root / app
        found = [p.parent.name for p in base.glob(f"*/{MANIFEST}")] if base.is_dir() else []
        return sorted(found, key=version_key)

    async def artifact(self, app: str, version: str) -> Artifact:
        manifest = self.root / app / version / MANIFEST
        if not manifest.is_file():
            known = ", ".join(await self.versions(app)) or "none"
            raise NotFoundError(
                f"version {version} of {app} is not in the store {self.root} (it has: {known})"
            )
        location = str(manifest.parent / f"{app}-{version}.tar.gz")
        return from_manifest(manifest.read_text(), str(manifest), location, (app, version))

    async def upgrade(self, app: str, from_version: str, version: str) -> Artifact | None:
        """The hot-upgrade package from `from_version` to `version`, if one was built."""
        directory = self.root.joinpath(*upgrade_place(app, from_version, version))
        manifest = directory / MANIFEST
        if not manifest.is_file():
            return None
        text = manifest.read_text()
        return package_from_manifest(text, str(manifest), lambda name: str(directory / name))

    async def put(
        self, tarball: Path, artifact: Artifact, extra: dict[str, Any] | None = None
    ) -> Artifact:
        """Copy a built tarball in and write its manifest last; returns the stored artifact.
        The copy and its checksum run on a worker thread: a release is tens of megabytes."""
        return await asyncio.to_thread(self._put, tarball, artifact, extra or {})

    def _put(self, tarball: Path, artifact: Artifact, extra: dict[str, Any]) -> Artifact:
        directory = self.root.joinpath(*place_of(artifact))
        self._refuse_another_build(directory, tarball, artifact)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / artifact.name
        shutil.copyfile(tarball, target.with_suffix(".partial"))
        os.replace(target.with_suffix(".partial"), target)
        stored = replace(
            artifact, location=str(target), sha256=sha256_of(target), size=target.stat().st_size
        )
        temporary = directory / (MANIFEST + ".partial")
        temporary.write_text(manifest_text(stored, extra))
        os.replace(temporary, directory / MANIFEST)
        return stored

    async def remove(self, app: str, version: str) -> None:
        """Delete a version, its manifest first so it is never listed half-removed."""
        directory = self.root / app / version
        (directory / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(directory, ignore_errors=True)

    async def local_file(self, artifact: Artifact) -> Path:
        """The tarball on this machine, for a push: it is already here."""
        return Path(artifact.location)

    def _refuse_another_build(self, directory: Path, tarball: Path, artifact: Artifact) -> None:
        manifest = directory / MANIFEST
        if manifest.is_file():
            stored = json.loads(manifest.read_text())["sha256"]
            what = stored_as(artifact)
            refuse_another_build(artifact.app, what, str(self.root), stored, sha256_of(tarball))


def place_of(artifact: Artifact) -> tuple[str, ...]:
    """Where every store keeps an artifact, as path parts below its root: a release in
    `<app>/<version>`, an upgrade package below the version it upgrades to."""
    if artifact.kind != "upgrade":
        return (artifact.app, artifact.version)
    if len(artifact.from_versions) != 1:  # release_handler takes one relup per running version
        raise UsageError(
            f"upgrade package {artifact.app} {artifact.version}: from_versions must name one "
            f"version, not {list(artifact.from_versions)}"
        )
    return upgrade_place(artifact.app, artifact.from_versions[0], artifact.version)


def upgrade_place(app: str, from_version: str, version: str) -> tuple[str, ...]:
    """The path parts of the upgrade package from `from_version` to `version` of `app`."""
    return (app, version, UPGRADES, from_version)


def stored_as(artifact: Artifact) -> str:
    """The version an artifact is stored as, for messages: an upgrade package names its from."""
    if artifact.kind == "upgrade":
        return f"{artifact.version} (upgrade from {', '.join(artifact.from_versions)})"
    return artifact.version


def package_from_manifest(text: str, where: str, location_of: Callable[[str], str]) -> Artifact:
    """An upgrade package from its manifest (read from `where`), kept beside it under the
    manifest's file name."""
    package = from_manifest(text, where, "")
    return replace(package, location=location_of(package.name))


def refuse_another_build(app: str, version: str, store: str, stored: str, new: str) -> None:
    """A version is immutable: nodes that have it would never get a different build of it.

    `new` = "" when the new build's checksum is not known yet (a build host about to upload).
    """
    if stored != new:
        raise UsageError(
            f"{app} {version} is already in the store {store} as another build; bump the "
            "version (nodes that have it would keep the old one)"
        )


def manifest_text(artifact: Artifact, extra: dict[str, Any]) -> str:
    """The manifest of a stored version, shared by every store: the artifact's fields but where."""
    fields = asdict(artifact)
    fields.pop("location")
    fields["platform"] = asdict(artifact.platform)
    return json.dumps({**fields, **extra}, indent=2, sort_keys=True)


def from_manifest(
    text: str, where: str, location: str, expected: tuple[str, str] | None = None
) -> Artifact:
    """An Artifact from a manifest read from `where` (older manifests lack the newer fields),
    kept at `location`; each field checked, and (app, version) the `expected` ones if given."""
    fields = checked_manifest(text, where)
    for name, wanted in zip(("app", "version"), expected or (), strict=False):
        if fields[name] != wanted:
            raise UsageError(f"{where}: {name}: expected {wanted!r} (where it is kept), "
                             f"got {fields[name]!r}")  # fmt: skip
    known = {f.name for f in dataclass_fields(Artifact)} - {"platform", "from_versions"}
    artifact = Artifact(
        **{k: v for k, v in fields.items() if k in known},
        platform=Platform(**fields.get("platform", {})),
        from_versions=tuple(fields.get("from_versions", ())),
    )
    return replace(artifact, location=location)
