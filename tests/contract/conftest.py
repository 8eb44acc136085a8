"""Worlds for the NodeShell contract: one per backend, each a fresh node plus what the tests need.

A world builds artifacts (v1 = 0.1.0, v2 = 0.2.0, broken = 0.3.0 that does not boot) and asks the
node itself what runs. What only one backend needs (the fake's notion of a release that does not
boot; the fleet's reset between tests) lives here, never in the contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import pytest

from edeliver.adapters.node.fakes import FakeHost, InMemoryNodeShell, InMemoryNodeShells
from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.local_host import comm
from edeliver.adapters.node.ssh import AsyncsshNodeShell, AsyncsshNodeShells
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.model import Artifact
from edeliver.core.ports import NodeShell
from tests.support.hello_release import Variant, tarball

BROKEN = "0.3.0"
VARIANT_OF: dict[str, Variant] = {"0.1.0": "good", "0.2.0": "good", BROKEN: "broken"}
# Processes a deploy starts on a node; the reset kills them (by pid) and nothing else.
RELEASE_PROCESSES = {"beam.smp", "run_erl", "erl_child_setup", "inet_gethost", "heart", "epmd"}


class World(Protocol):
    """A fresh node reached through one backend's NodeShell."""

    shell: NodeShell

    def artifact(self, version: str) -> Artifact: ...

    async def running_version(self) -> str | None:
        """What the node itself says runs, not what the shell under test says."""
        ...

    async def another_shell(self) -> NodeShell:
        """A second deployer's shell on the same node."""
        ...


# -- the in-memory fake ------------------------------------------------------------------------


class _BootAwareShell(InMemoryNodeShell):
    """A broken release is switched to but never boots, while activate succeeds, as for real."""

    async def activate(self, artifact: Artifact) -> None:
        await super().activate(artifact)
        if artifact.version == BROKEN:
            self.host.running = None


class _BootAwareShells(InMemoryNodeShells):
    async def open(self, node: NodeConfig) -> InMemoryNodeShell:
        await super().open(node)
        return _BootAwareShell(node.name, self.hosts[node.name], self.faults, self.trace)


class FakeWorld:
    def __init__(self) -> None:
        self.host = FakeHost()
        self.shells = _BootAwareShells({"node1": self.host})
        self.shell: NodeShell = InMemoryNodeShell("unopened", self.host, self.shells.faults, [])

    async def open(self) -> FakeWorld:
        self.shell = await self.shells.open(NodeConfig("node1", "fake.invalid", "/srv/hello"))
        return self

    async def another_shell(self) -> NodeShell:
        """A second deployer's shell on the same node."""
        return await self.shells.open(NodeConfig("node1", "fake.invalid", "/srv/hello"))

    def artifact(self, version: str) -> Artifact:
        digest = hashlib.sha256(f"hello-{version}".encode()).hexdigest()
        return Artifact("hello", version, digest, 1000, location=f"memory:hello-{version}")

    async def running_version(self) -> str | None:
        return self.host.running


@pytest.fixture
async def fake_world() -> FakeWorld:
    return await FakeWorld().open()


# -- real sshd nodes and real hello releases ----------------------------------------------------


class HelloReleases:
    """Real tarballs of examples/hello, built once (cached on disk) and copied aside for the
    session, so that a rebuild by a concurrent run cannot change one under a test."""

    def __init__(self, root: Path, variants: dict[str, Variant] = VARIANT_OF) -> None:
        self.root, self.variants, self._made = root, variants, dict[str, Artifact]()

    def artifact(self, version: str) -> Artifact:
        if version not in self._made:
            copy = self.root / f"hello-{version}.tar.gz"
            shutil.copyfile(tarball(version, self.variants[version]), copy)
            digest = hashlib.sha256(copy.read_bytes()).hexdigest()
            made = Artifact("hello", version, digest, copy.stat().st_size, location=str(copy))
            self._made[version] = made
        return self._made[version]


@pytest.fixture(scope="session")
def hello_releases(tmp_path_factory: pytest.TempPathFactory) -> HelloReleases:
    return HelloReleases(tmp_path_factory.mktemp("hello-releases"))


@dataclass
class FleetWorld:
    fleet: LocalFleet
    node: FleetNode
    config: NodeConfig
    shell: AsyncsshNodeShell
    releases: HelloReleases
    scratch: Path

    def artifact(self, version: str) -> Artifact:
        return self.releases.artifact(version)

    async def another_shell(self) -> NodeShell:
        """A second deployer's shell on the same node, over its own connection."""
        return await AsyncsshNodeShells(known_hosts=str(self.fleet.known_hosts)).open(self.config)

    def local(self, relative: str = "") -> Path:
        """The real path, on this machine, of a path under the node's deploy path."""
        base = self.node.local(self.config.path)
        return base / relative if relative else base

    def corrupted(self, artifact: Artifact) -> Artifact:
        """The same artifact, but its local tarball has one byte flipped."""
        copy = self.scratch / f"corrupt-{artifact.name}"
        data = bytearray(Path(artifact.location).read_bytes())
        data[len(data) // 2] ^= 0xFF
        copy.write_bytes(data)
        return replace(artifact, location=str(copy))

    def beam_pids(self) -> list[int]:
        return [p for p in self.fleet.processes(self.node.name) if comm(p) == "beam.smp"]

    async def running_version(self) -> str | None:
        """Ask the running BEAM over Erlang distribution (rpc), from outside the node's shell."""
        if not self.beam_pids():
            return None
        clients = sorted(self.local("releases").glob("[!.]*/bin/hello"))
        if not clients:
            return "a VM with no release on disk"
        rpc_tmp = self.scratch / "rpc"
        rpc_tmp.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "ERL_EPMD_PORT": str(self.node.epmd_port),
            "RELEASE_TMP": str(rpc_tmp),
        }
        command = [str(clients[0]), "rpc", "IO.puts(Hello.version())"]
        done = await asyncio.to_thread(
            subprocess.run, command, env=env, capture_output=True, text=True, timeout=30
        )
        return done.stdout.strip() if done.returncode == 0 else "a VM that does not answer"

    def write_partial_upload(self, artifact: Artifact, data: bytes) -> Path:
        """Leave `data` as the node's partial upload, owned by the node's user."""
        uploads = self.local(".edeliver/uploads")
        uploads.mkdir(parents=True, exist_ok=True)
        partial = uploads / f"{artifact.name}.partial"
        partial.write_bytes(data)
        owner = self.node.root.stat()
        for path in (self.local(), self.local(".edeliver"), uploads, partial):
            os.chown(path, owner.st_uid, owner.st_gid)
        return partial


@pytest.fixture(scope="module")
def module_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """One sshd node for a whole test module; `fleet_world` resets it before every test."""
    with LocalFleet(tmp_path_factory.mktemp("fleet"), 1) as fleet:
        yield fleet


def node_config(fleet: LocalFleet, node: FleetNode, path: str | None = None) -> NodeConfig:
    return NodeConfig(
        name=node.name, host=node.host, path=path or node.path, port=node.port,
        user=node.user, identity_file=str(fleet.client_key),
    )  # fmt: skip


@dataclass
class WorldMaker:
    """Opens worlds on the module's fleet; `path` may lie below the fleet's deploy path."""

    fleet: LocalFleet
    releases: HelloReleases
    scratch: Path

    async def __call__(
        self, path: str | None = None, shells: AsyncsshNodeShells | None = None
    ) -> FleetWorld:
        node = self.fleet.nodes[0]
        reset_node(self.fleet, node)
        config = node_config(self.fleet, node, path)
        shells = shells or AsyncsshNodeShells(known_hosts=str(self.fleet.known_hosts))
        shell = await shells.open(config)
        return FleetWorld(self.fleet, node, config, shell, self.releases, self.scratch)


@pytest.fixture
def open_world(
    module_fleet: LocalFleet, hello_releases: HelloReleases, tmp_path: Path
) -> WorldMaker:
    return WorldMaker(module_fleet, hello_releases, tmp_path)


@pytest.fixture
async def fleet_world(open_world: WorldMaker) -> AsyncIterator[FleetWorld]:
    world = await open_world()
    yield world
    await world.shell.close()


def reset_node(fleet: LocalFleet, node: FleetNode) -> None:
    """Kill the releases a test started on the node (by pid) and empty its deploy dir."""
    deadline = time.monotonic() + 10
    while pids := [p for p in fleet.processes(node.name) if comm(p) in RELEASE_PROCESSES]:
        for pid in pids:
            _kill(pid)
        if time.monotonic() > deadline:
            raise RuntimeError(f"release processes of {node.name} survive SIGKILL: {pids}")
        time.sleep(0.05)
    for child in node.root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # gone already
        os.kill(pid, signal.SIGKILL)
