"""A rollout names its release to the node shells before any node opens, and the SSH shells
check a pushed archive then, beside the network waits of connecting, locking and probing,
instead of on the first prepare's path (issue 15: the deployer's fixed cost at N = 1)."""

from __future__ import annotations

import asyncio
import hashlib
import tarfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from edeliver.adapters.node import ssh
from edeliver.adapters.node.fakes import InMemoryNodeShells
from edeliver.adapters.node.ssh import AsyncsshNodeShells
from edeliver.adapters.node.transfer import FromLocation
from edeliver.core.domain.errors import NodeError
from edeliver.core.domain.model import Artifact
from edeliver.core.usecases.rollout import deploy
from tests.support.archives import EVIL, crafted
from tests.support.simulation import Simulation
from tests.support.waiting import wait_for_async


def _artifact_of(path: Path) -> Artifact:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Artifact("hello", "1.0.0", digest, path.stat().st_size, location=str(path))


def _counting_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The archives the SSH shells read, in order."""
    read: list[str] = []
    check = ssh.local_problems

    def counted(local: Path, artifact: Artifact) -> list[str]:
        read.append(local.name)
        return check(local, artifact)

    monkeypatch.setattr(ssh, "local_problems", counted)
    return read


def _read(read: list[str]) -> Callable[[], Awaitable[bool]]:
    async def anything() -> bool:
        return bool(read)

    return anything


def test_a_pushed_archive_is_read_once_as_soon_as_the_rollout_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = _counting_checks(monkeypatch)
    release = crafted(tmp_path / "hello-1.0.0.tar.gz", [("bin/hello", tarfile.REGTYPE, "")])
    artifact = _artifact_of(release)

    async def rollout() -> None:
        shells = AsyncsshNodeShells()
        shells.expect(artifact)
        assert read == []  # begun on the loop, not inside the call
        await wait_for_async(_read(read), 10, "the archive read ahead", every=0.01)
        for node in ("node1", "node2"):
            assert await shells.checked_local_file(node, artifact) == release

    asyncio.run(rollout())
    assert read == [release.name]  # not again for the nodes' prepares


def test_an_unsafe_archive_found_ahead_is_told_by_each_prepare_naming_its_node(
    tmp_path: Path,
) -> None:
    artifact = _artifact_of(crafted(tmp_path / "hello-1.0.0.tar.gz", EVIL))

    async def rollout() -> list[str]:
        shells = AsyncsshNodeShells()
        shells.expect(artifact)  # raises nothing: the step that needs the file tells
        said = []
        for node in ("node1", "node2"):
            with pytest.raises(NodeError) as refused:
                await shells.checked_local_file(node, artifact)
            said.append(str(refused.value))
        return said

    first, second = asyncio.run(rollout())
    assert first.startswith("node1: refusing to unpack hello-1.0.0.tar.gz (version 1.0.0): symlink")
    assert first.endswith("; nothing was uploaded")
    assert second.startswith("node2: refusing to unpack hello-1.0.0.tar.gz (version 1.0.0)")


class _PulledByTheNodes(FromLocation):
    async def fetch_command(self, artifact: Artifact) -> str | None:
        return "curl -fsS https://store.example/hello.tar.gz"


def test_a_release_the_nodes_pull_is_not_read_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = _counting_checks(monkeypatch)
    artifact = _artifact_of(crafted(tmp_path / "hello-1.0.0.tar.gz", EVIL))

    async def rollout() -> None:
        shells = AsyncsshNodeShells(delivery=_PulledByTheNodes())
        shells.expect(artifact)
        for _ in range(20):  # the check-ahead task's every await
            await asyncio.sleep(0)

    asyncio.run(rollout())
    assert read == []


def test_a_deploy_names_its_release_to_the_shells_before_opening_a_node(tmp_path: Path) -> None:
    sim = Simulation.create(tmp_path, 3)
    sim.store.add(Artifact("hello", "1.0.0", sha256="0" * 64, size=10))
    deployments = sim.deployments()
    services = sim.services(deployments)
    shells = services.shells
    assert isinstance(shells, InMemoryNodeShells)
    opened_when_told: list[list[str]] = []
    expect = shells.expect

    def told(artifact: Artifact) -> None:
        opened_when_told.append(list(shells.opened))
        expect(artifact)

    shells.expect = told  # type: ignore[method-assign]
    try:
        assert asyncio.run(deploy(services, sim.config, "prod", "1.0.0")).outcome == "succeeded"
    finally:
        deployments.close()
    assert opened_when_told == [[]]
    assert shells.expected == ["1.0.0"]
    assert sorted(shells.opened) == ["n0", "n1", "n2"]
