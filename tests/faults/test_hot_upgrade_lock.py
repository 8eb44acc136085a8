"""Fault: a deployer cut off mid hot upgrade, its node taken over by `resume --force`.

One real sshd node runs hello v1; the deployer has unpacked the package v1 -> v2 when its
heartbeats stop (it is cut off). The node's lock expires and a forced resume (the same
deployment, a new generation) takes the node. The stale deployer, and any script it left with
the old generation, can then neither `install_release` nor `make_permanent` there: the node goes
on exactly as the new holder drives it. Driven through the adapters, as the two deployers'
processes would drive them, so that the stale one can be woken at each of the two steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from edeliver.adapters.node import hot_scripts as hs
from edeliver.adapters.node import node_lock
from edeliver.adapters.node.hot_upgrade import HotUpgradeNodeShell, HotUpgradeNodeShells
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.node_scripts import Layout
from edeliver.adapters.node.ssh import AsyncsshNodeShell, AsyncsshNodeShells
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.core.domain.errors import EdeliverError
from edeliver.core.domain.model import Artifact
from edeliver.core.ports import NodeClaim
from tests.contract.conftest import HelloReleases, node_config
from tests.contract.hot_world import HOT_VARIANTS, V1, V2, store_with_upgrade_package
from tests.support.nodes import ssh
from tests.support.waiting import wait_for_async

CLAIM = NodeClaim("33333333-cccc-4000-8000-000000000003", "hot", "alice@ci")


@dataclass
class Node:
    fleet: LocalFleet
    store: LocalDirectoryStore
    layout: Layout

    async def releases(self, shell: AsyncsshNodeShell) -> dict[str, str]:
        said = await shell.script_output(hs.releases_script(self.layout))
        return hs.parse_releases(said).status

    def vms(self) -> int:
        node = self.fleet.nodes[0]
        said = ssh(self.fleet, node, "pgrep -u \"$(id -u)\" -f 'bea[m].smp' | wc -l").stdout
        return int(said.strip())


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """One real node, and a store with hello v1, v2 and the package v1 -> v2."""
    root = tmp_path_factory.mktemp("hot-lock")
    (root / "releases").mkdir()
    store = store_with_upgrade_package(root, HelloReleases(root / "releases", HOT_VARIANTS))
    with LocalFleet(root / "fleet", 1) as fleet:
        yield Node(fleet, store, Layout(fleet.nodes[0].path, "hello"))


@pytest.fixture
async def shells(node: Node) -> AsyncIterator[tuple[AsyncsshNodeShells, HotUpgradeNodeShells]]:
    full = AsyncsshNodeShells(known_hosts=str(node.fleet.known_hosts))
    yield full, HotUpgradeNodeShells(full, node.store, "hello")


async def _steps(shell: HotUpgradeNodeShell, artifact: Artifact, *steps: str) -> None:
    for step in steps:
        await getattr(shell, step)(artifact)


async def test_a_stale_deployer_can_neither_hot_install_nor_make_permanent_after_a_takeover(
    node: Node,
    shells: tuple[AsyncsshNodeShells, HotUpgradeNodeShells],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the takeover, install_release and make_permanent of the stale deployer (and of
    scripts with its generation) are refused, and release_handler keeps what the new holder
    made; the node ends on v2, permanent, one VM, its lock free."""
    full, hot = shells
    config = node_config(node.fleet, node.fleet.nodes[0])
    v1, v2 = [await node.store.artifact("hello", v) for v in (V1, V2)]
    first = await full.open(config)
    await first.hold(CLAIM)
    await _steps(HotUpgradeNodeShell(first, hot), v1, "prepare", "install", "activate", "verify")
    stale_deployer = HotUpgradeNodeShell(first, hot)
    await _steps(stale_deployer, v2, "prepare", "install")
    assert first._lock is not None
    stale = first._lock.generation
    first._lock._beats.cancel()  # cut off: no heartbeat reaches the node any more

    second = await full.open(config)  # `resume --force`: waits the stale holder out
    try:
        await second.hold(CLAIM)
        monkeypatch.setattr(node_lock, "SAME_DEPLOYMENT_WAIT", 2)  # the stale one's retake
        refused = await second.run_script(hs.install_script(node.layout, V2, stale))
        assert refused.exit_status == node_lock.REFUSED_BY_LOCK, refused.stderr
        assert "a newer deployer holds it" in str(refused.stderr)
        with pytest.raises(EdeliverError, match="locked by deployment 33333333"):
            await stale_deployer.activate(v2)
        assert await node.releases(second) == {V2: "unpacked", V1: "permanent"}

        resumed = HotUpgradeNodeShell(second, hot)
        await _steps(resumed, v2, "prepare", "install", "activate")
        refused = await second.run_script(hs.permanent_script(node.layout, V2, stale))
        assert refused.exit_status == node_lock.REFUSED_BY_LOCK, refused.stderr
        with pytest.raises(EdeliverError, match="locked by deployment 33333333"):
            await stale_deployer.verify(v2)
        assert await node.releases(second) == {V2: "current", V1: "permanent"}

        await resumed.verify(v2)
        assert await node.releases(second) == {V2: "permanent", V1: "old"}
    finally:
        await asyncio.gather(first.close(), second.close(), return_exceptions=True)
    assert node.vms() == 1
    current = node.fleet.nodes[0].root / "current"
    assert (current / "releases" / V2 / "start.boot").is_file()  # the root v1's, holding v2
    assert (current / "bin/hello").is_file()
    await _wait_until_lock_free(full, config)


async def _wait_until_lock_free(full: AsyncsshNodeShells, config: object) -> None:
    """Ask the node on a fresh connection until its lock is free; fail after 30 s."""
    reader = await full.open(config)  # type: ignore[arg-type]

    async def free() -> bool:
        return await reader.lock_holder() is None

    try:
        await wait_for_async(free, 30, "the node lock to be free", every=0.5)
    finally:
        await reader.close()
