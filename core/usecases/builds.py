"""Building into the store: a release, and a hot-upgrade package between two stored releases.

The builder and the store are ports; the tarball they hand each other is a file on this machine
that the core passes along without opening (`F`, see `ports`).
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar, cast

from edeliver.core.domain.errors import NotFoundError, UsageError
from edeliver.core.domain.model import Artifact
from edeliver.core.ports import Builder, Clock, DirectStore, ReleaseStore, Shelf

F = TypeVar("F")


def provenance(clock: Clock, user: str) -> dict[str, str]:
    """Who built what is stored, and when: kept in the store's manifest."""
    return {"built_at": clock.now().isoformat(timespec="seconds"), "built_by": user}


async def build_release(builder: Builder[F], store: Shelf[F], clock: Clock, user: str) -> Artifact:
    """Build a release and put it in the store with its provenance."""
    built = await builder.build()
    stamp = provenance(clock, user)
    artifact = dataclasses.replace(built.artifact, built_at=stamp.pop("built_at"))
    if built.tarball is None:  # a build host put it into the store itself
        return await cast(DirectStore, store).record(artifact, stamp)
    return await store.put(built.tarball, artifact, stamp)


async def pristine(store: ReleaseStore, app: str, version: str) -> Artifact:
    """The release an upgrade starts from, as the store has it; without it there is no relup."""
    try:
        return await store.artifact(app, version)
    except NotFoundError as error:
        raise NotFoundError(
            f"{error}. An upgrade is built from the pristine {app} {version} release: build "
            f"it from that version's sources (`git checkout <its tag>` then `edeliver build`), "
            "or copy it into the store from where it was built"
        ) from None


async def on_this_machine(store: Shelf[F], release: Artifact) -> Artifact:
    """The release at a path on this machine, where an upgrade is built from: a local store's
    own file, or a copy a remote store's checksum was verified on (kept in the local cache)."""
    return dataclasses.replace(release, location=str(await store.local_file(release)))


def refuse_same_version(app: str, old: Artifact, new: Artifact) -> None:
    if new.version == old.version:
        raise UsageError(f"{app} {new.version} runs already; bump the version to upgrade")
