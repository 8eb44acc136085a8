"""The world of the NodeShell contract for hot upgrades: a real sshd node, real hello releases
(v2 = the `v2` variant, whose code the relup changes) and a store holding the upgrade package
0.1.0 -> 0.2.0, built once per session from the cached tarballs, as `edeliver build upgrade` does.

A deployment opens one shell per node, which takes its route at its first step and keeps it; the
contract deploys several versions through one `world.shell`, so the world gives every version a
hot shell of its own (`ShellPerDeployment`) over the same connection, as successive deployments
would have. A fresh node runs no VM, so its first deploy takes the full-release route; v2 over a
running v1 takes the hot route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from edeliver.adapters.build.upgrade_build import build_upgrade
from edeliver.adapters.node.hot_upgrade import HotUpgradeNodeShell, HotUpgradeNodeShells
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.ssh import AsyncsshNodeShell, AsyncsshNodeShells
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.core.domain.model import Artifact, NodeFacts, Route
from edeliver.core.ports import CommandResult
from tests.contract.conftest import BROKEN, FleetWorld, HelloReleases, WorldMaker
from tests.support.hello_release import SOURCE_DIR, Variant

V1, V2 = "0.1.0", "0.2.0"
HOT_VARIANTS: dict[str, Variant] = {V1: "good", V2: "v2", BROKEN: "broken"}


def store_with_upgrade_package(root: Path, releases: HelloReleases) -> LocalDirectoryStore:
    """A local store holding v1, v2 and the package 0.1.0 -> 0.2.0 built from them."""
    store = LocalDirectoryStore(root / "store")
    old, new = (
        asyncio.run(store.put(Path(a.location), a)) for a in map(releases.artifact, (V1, V2))
    )
    built = build_upgrade(old, new, root / "upgrade-work", SOURCE_DIR)
    asyncio.run(store.put(built.tarball, built.artifact))
    return store


class ShellPerDeployment:
    """A NodeShell that runs each version's steps through the hot shell a deployment of that
    version would open, all over one full-release shell (one connection)."""

    def __init__(self, full: AsyncsshNodeShell, shells: HotUpgradeNodeShells) -> None:
        self.full, self.shells = full, shells
        self.by_version: dict[str, HotUpgradeNodeShell] = {}
        self.routes: dict[str, Route] = {}  # what each version's prepare decided

    def of(self, artifact: Artifact) -> HotUpgradeNodeShell:
        shell = self.by_version.get(artifact.version)
        if shell is None:
            shell = self.by_version[artifact.version] = HotUpgradeNodeShell(self.full, self.shells)
        return shell

    async def probe(self) -> NodeFacts:
        return await HotUpgradeNodeShell(self.full, self.shells).probe()

    async def prepare(self, artifact: Artifact) -> Route:
        route = self.routes[artifact.version] = await self.of(artifact).prepare(artifact)
        return route

    def take_route(self, route: Route) -> None:
        raise AssertionError("the contract never resumes a recorded route")

    async def install(self, artifact: Artifact) -> None:
        await self.of(artifact).install(artifact)

    async def activate(self, artifact: Artifact) -> None:
        await self.of(artifact).activate(artifact)

    async def verify(self, artifact: Artifact) -> None:
        await self.of(artifact).verify(artifact)

    async def roll_back(self, artifact: Artifact, previous: str | None) -> None:
        await self.of(artifact).roll_back(artifact, previous)

    async def run_command(self, script: str, env: Mapping[str, str]) -> CommandResult:
        return await self.full.run_command(script, env)

    async def eval_elixir(
        self, artifact: Artifact, code: str, env: Mapping[str, str]
    ) -> CommandResult:
        return await self.of(artifact).eval_elixir(artifact, code, env)

    async def close(self) -> None:
        await self.full.close()


class HotWorld:
    """A FleetWorld whose shell is the hot-upgrade shell; `routes` says which way each went."""

    def __init__(self, fleet_world: FleetWorld, hot: HotUpgradeNodeShells) -> None:
        self.fleet_world = fleet_world
        self.shell = ShellPerDeployment(fleet_world.shell, hot)

    def artifact(self, version: str) -> Artifact:
        return self.fleet_world.artifact(version)

    async def running_version(self) -> str | None:
        return await self.fleet_world.running_version()


async def open_hot_world(
    fleet: LocalFleet, releases: HelloReleases, store: LocalDirectoryStore, scratch: Path
) -> HotWorld:
    """A reset node, reached by the hot shells of `store`."""
    full = AsyncsshNodeShells(known_hosts=str(fleet.known_hosts))
    world = await WorldMaker(fleet, releases, scratch)(shells=full)
    return HotWorld(world, HotUpgradeNodeShells(full, store, "hello"))
