"""A hot upgrade package built from two stored releases, installed by release_handler on a real
node through the hot NodeShell, and the hot downgrade back: the node itself is asked what runs.
"""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.build.upgrade_build import NotHot, build_upgrade
from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.hot_upgrade import HotUpgradeNodeShell, HotUpgradeNodeShells
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.ssh import AsyncsshNodeShells
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.model import Artifact, Route
from tests.integration.conftest import FleetFactory
from tests.support.hello_release import SOURCE_DIR, tarball
from tests.support.nodes import ssh

V1, V2 = "0.1.0", "0.2.0"


def rpc(fleet: LocalFleet, node: FleetNode, elixir: str) -> str:
    """What the node's own VM answers (plain OpenSSH + `bin/hello rpc`)."""
    quoted = elixir.replace("'", "'\\''")
    answer = ssh(fleet, node, f"cd {node.path}/current && bin/hello rpc '{quoted}'")
    assert answer.returncode == 0, answer.stderr
    return answer.stdout.strip()


def put_on_node(fleet: LocalFleet, node: FleetNode, name: str, text: str) -> None:
    shared = node.root / "shared"
    shared.mkdir(exist_ok=True)
    (shared / name).write_text(text)
    owner = node.root.stat()
    for path in (shared, shared / name):
        os.chown(path, owner.st_uid, owner.st_gid)


@pytest.fixture
def store(tmp_path: Path) -> LocalDirectoryStore:
    """v1 (good) and v2 (new state shape, module added/removed, protocol impl) in a store."""
    store = LocalDirectoryStore(tmp_path / "store")
    for version, variant in ((V1, "good"), (V2, "v2")):
        built = Artifact("hello", version, "", 0, platform=local_platform())
        asyncio.run(store.put(tarball(version, variant), built))
    return store


async def upgrade_package(store: LocalDirectoryStore, tmp_path: Path) -> Artifact:
    old, new = [await store.artifact("hello", v) for v in (V1, V2)]
    built = build_upgrade(old, new, tmp_path / "work", SOURCE_DIR)
    return await store.put(built.tarball, built.artifact)


def test_the_package_has_exactly_what_release_handler_needs(
    store: LocalDirectoryStore, tmp_path: Path
) -> None:
    """releases/hello-0.2.0.rel, releases/0.2.0 with relup, only the new lib; no bin, COOKIE."""
    package = asyncio.run(upgrade_package(store, tmp_path))
    with tarfile.open(package.location) as archive:
        names = archive.getnames()
    assert "releases/hello-0.2.0.rel" in names
    assert {"releases/0.2.0/relup", "releases/0.2.0/runtime.exs"} <= set(names)
    assert "lib/hello-0.2.0/ebin/hello.appup" in names
    assert {n.split("/")[1] for n in names if n.startswith("lib/")} == {"hello-0.2.0"}
    assert not [n for n in names if n.startswith(("bin", "./")) or "COOKIE" in n]
    assert not [n for n in names if n.endswith(("start_erl.data", "RELEASES"))]
    assert (package.kind, package.from_versions) == ("upgrade", (V1,))
    again = asyncio.run(upgrade_package(store, tmp_path))  # reproducible: the store takes it again
    assert again.sha256 == package.sha256


def test_a_change_of_elixir_or_otp_is_refused_with_the_reason(
    store: LocalDirectoryStore, tmp_path: Path
) -> None:
    """A new Elixir (its apps ship no appups) is not a hot upgrade: refused, mode = release."""
    old, new = (asyncio.run(store.artifact("hello", v)) for v in (V1, V2))
    faked = tmp_path / "faked-elixir.tar.gz"
    _with_elixir_version(Path(new.location), faked, "1.14.0", "1.15.9")
    with pytest.raises(NotHot, match=r"elixir 1\.14\.0 -> 1\.15\.9.*mode = \"release\""):
        build_upgrade(old, Artifact("hello", V2, "", 0, location=str(faked)), tmp_path, SOURCE_DIR)


def test_a_changed_cookie_is_refused_since_the_node_would_become_unreachable(
    store: LocalDirectoryStore, tmp_path: Path
) -> None:
    """mix generates a cookie per build unless one is fixed: the upgrade says to fix it."""
    old, new = (asyncio.run(store.artifact("hello", v)) for v in (V1, V2))
    faked = tmp_path / "other-cookie.tar.gz"
    _edited(Path(new.location), faked, "releases/COOKIE", lambda _: "another-cookie")
    with pytest.raises(NotHot, match=r"cookie changes.*fixed `cookie:`.*mode = \"release\""):
        build_upgrade(old, Artifact("hello", V2, "", 0, location=str(faked)), tmp_path, SOURCE_DIR)


def _with_elixir_version(source: Path, target: Path, old: str, new: str) -> None:
    """A copy of a release tarball whose .rel claims another elixir app version."""
    edit = lambda text: text.replace(f'{{elixir,"{old}"', f'{{elixir,"{new}"')  # noqa: E731
    _edited(source, target, f"releases/{V2}/hello.rel", edit)


def _edited(source: Path, target: Path, name: str, edit: Callable[[str], str]) -> None:
    """A copy of a release tarball with the text of one entry edited."""
    with tarfile.open(source) as inp, tarfile.open(target, "w:gz") as out:
        for member in inp.getmembers():
            data = inp.extractfile(member) if member.isfile() else None
            if member.name == name and data:
                text = edit(data.read().decode()).encode()
                member.size = len(text)
                data = io.BytesIO(text)
            out.addfile(member, data)


async def test_release_handler_upgrades_and_downgrades_a_running_node_hot(
    fleet: FleetFactory, store: LocalDirectoryStore, tmp_path: Path
) -> None:
    """Same OS pid both ways; state, modules, protocol dispatch and runtime.exs value follow."""
    local = fleet(1)
    node = local.nodes[0]
    put_on_node(local, node, "hello.greeting", "hi from node1")
    await upgrade_package(store, tmp_path)
    config = NodeConfig(node.name, node.host, node.path, node.port, node.user,
                        identity_file=str(local.client_key))  # fmt: skip
    full = AsyncsshNodeShells(known_hosts=str(local.known_hosts))
    release1, release2 = [await store.artifact("hello", v) for v in (V1, V2)]
    first = await full.open(config)
    for step in (first.prepare, first.install, first.activate, first.verify):
        await step(release1)
    await first.close()
    pid = rpc(local, node, "IO.puts(System.pid())")
    rpc(local, node, "Hello.Counter.bump(); Hello.Counter.bump(); IO.puts(:ok)")

    shells = HotUpgradeNodeShells(full, store, "hello")
    shell: HotUpgradeNodeShell = await shells.open(config)
    try:
        route = await shell.prepare(release2)
        for step in (shell.install, shell.activate, shell.verify):
            await step(release2)
        assert route == Route(True, f"hot upgrade from {V1}", V1, V1, V1)
        assert rpc(local, node, "IO.puts(System.pid())") == pid
        assert rpc(local, node, "IO.inspect(Hello.Counter.info())") == (
            '%{code_version: "0.2.0", count: 2, schema: 2}'
        )
        assert rpc(local, node, 'IO.puts(to_string(%Hello.Greeter{name: "ops"}))') == (
            "hi from node1, ops"
        )
        assert rpc(local, node, "IO.inspect(Code.ensure_loaded?(Hello.Legacy))") == "false"
        facts = await shell.probe()
        assert (facts.running_version, facts.current_version) == (V2, V2)

        await shell.roll_back(release2, V1)
        assert rpc(local, node, "IO.puts(System.pid())") == pid
        assert rpc(local, node, "IO.inspect(Hello.Counter.info())") == (
            '%{code_version: "0.1.0", count: 2}'
        )
        assert rpc(local, node, "IO.inspect(Code.ensure_loaded?(Hello.Greeter))") == "false"
        facts = await shell.probe()
        assert (facts.running_version, facts.current_version) == (V1, V1)
    finally:
        await shell.close()
