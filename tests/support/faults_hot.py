"""The hello project on real nodes with an upgrade-mode environment `hot`, for the hot-upgrade
e2e and fault tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.cli.demo import prepare_project
from edeliver.core.domain.model import Artifact
from tests.e2e.conftest import Project
from tests.support.hello_release import Variant, tarball

V1, V2 = "0.1.0", "0.2.0"


@contextmanager
def hot_project(root: Path, nodes: int, policy: str) -> Iterator[Project]:
    """`nodes` real nodes, the environment `hot` with `policy`, hello v1 and v2 in the store;
    the nodes are stopped on exit."""
    fleet = LocalFleet(root / "fleet", nodes)
    fleet.start()
    try:
        directory = prepare_project(root, fleet, "hot", policy)
        for version, variant in ((V1, "good"), (V2, "v2")):
            store_release(directory, version, variant)
        yield Project(directory, fleet)
    finally:
        fleet.stop()


def deploy_v1_and_build_package(project: Project) -> None:
    """V1 on every node of `hot` (a full release: no VM runs yet), then the package V1 -> V2."""
    first = project.edeliver("upgrade", "hot", "--version", V1, "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    package = project.edeliver("build", "upgrade", "--to", V2, "-e", "hot", "--json")
    assert package.returncode == 0, package.stdout + package.stderr


def store_release(project: Path, version: str, variant: Variant) -> None:
    """Put a build of examples/hello into the project's local store."""
    store = LocalDirectoryStore(project / ".deliver/releases")
    built = Artifact("hello", version, "", 0, platform=local_platform())
    asyncio.run(store.put(tarball(version, variant), built))
