"""Nodes reached the way people configure SSH: `~/.ssh/config` aliases and ProxyJump bastions,
on real sshd nodes; the jump hosts' keys are verified like any node's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edeliver.adapters.local.ssh_config import resolve
from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.ssh import AsyncsshNodeShells
from edeliver.adapters.node.ssh_connect import fetch_host_key
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import HostKeyError, NodeUnreachable


def host_block(alias: str, node: FleetNode, key: Path, known_hosts: Path, jump: str = "") -> str:
    """A `Host` block giving everything of `node` under `alias`, as a 1.x user writes it."""
    return (
        f"Host {alias}\n  HostName {node.host}\n  Port {node.port}\n  User {node.user}\n"
        f"  IdentityFile {key}\n  UserKnownHostsFile {known_hosts}\n  ConnectTimeout 5\n"
        + (f"  ProxyJump {jump}\n" if jump else "")
    )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """node1 and node2 are bastions, node3 the app node behind them."""
    with LocalFleet(tmp_path_factory.mktemp("sshconfig") / "fleet", 3) as nodes:
        yield nodes


def ssh_config(fleet: LocalFleet, path: Path, known_hosts: Path | None = None) -> Path:
    known = known_hosts or fleet.known_hosts
    bastion, inner, app = fleet.nodes
    key = fleet.client_key
    path.write_text(
        host_block("bastion", bastion, key, known)
        + host_block("inner", inner, key, known)
        + host_block("app-direct", app, key, known)
        + host_block("app", app, key, known, jump="bastion,inner")
        # A port no sshd listens on: the toml's explicit port must win over it.
        + f"Host app-wrong-port\n  HostName {app.host}\n  Port 1\n  User {app.user}\n"
        f"  IdentityFile {key}\n  UserKnownHostsFile {known}\n"
    )
    return path


@pytest.fixture
def config(fleet: LocalFleet, tmp_path: Path) -> Path:
    """An ssh config with every node under its aliases, all keys trusted."""
    return ssh_config(fleet, tmp_path / "config")


@pytest.fixture
def shells(config: Path) -> AsyncsshNodeShells:
    return AsyncsshNodeShells(ssh_config=[str(config)])


async def whoami(shells: AsyncsshNodeShells, node: NodeConfig) -> str:
    conn = await shells.connect(node)
    try:
        done = await conn.run("id -un", check=True)
        return str(done.stdout).strip()
    finally:
        conn.close()


async def test_an_alias_takes_its_port_user_and_key_from_the_ssh_config(
    fleet: LocalFleet, shells: AsyncsshNodeShells
) -> None:
    """A node whose host is an alias connects on the alias's Port, as its User, with its key."""
    node = NodeConfig("app", "app-direct", "/srv/hello")
    assert await whoami(shells, node) == fleet.nodes[2].user


async def test_the_tomls_port_wins_over_the_ssh_config(
    fleet: LocalFleet, shells: AsyncsshNodeShells
) -> None:
    """An explicit port in edeliver.toml overrides the alias's Port."""
    node = NodeConfig("app", "app-wrong-port", "/srv/hello", port=fleet.nodes[2].port)
    assert await whoami(shells, node) == fleet.nodes[2].user


async def test_a_node_behind_two_jump_hosts_connects_and_shows_its_route(
    fleet: LocalFleet, config: Path, shells: AsyncsshNodeShells
) -> None:
    """ProxyJump bastion,inner: each hop is opened in turn and the route names both."""
    node = NodeConfig("app", "app", "/srv/hello")
    bastion, inner, app = fleet.nodes
    assert resolve(node, [str(config)]).address == (
        f"{app.user}@{app.host}:{app.port} via {bastion.user}@{bastion.host}:{bastion.port}"
        f" via {inner.user}@{inner.host}:{inner.port}"
    )
    assert await whoami(shells, node) == app.user


async def test_a_jump_host_with_an_unknown_key_is_refused_by_name(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    """The bastion's key missing from known_hosts refuses the node (exit 3), naming the bastion."""
    known = tmp_path / "known_hosts"
    known.write_text("".join(f"{n.known_hosts_line}\n" for n in fleet.nodes if n.name != "node1"))
    config = ssh_config(fleet, tmp_path / "config", known)
    shells = AsyncsshNodeShells(ssh_config=[str(config)])
    with pytest.raises(HostKeyError) as refused:
        await whoami(shells, NodeConfig("app", "app", "/srv/hello"))
    assert "jump host bastion of app" in str(refused.value)
    assert refused.value.exit_code == 3


async def test_an_unreachable_jump_host_is_one_line_naming_it(
    fleet: LocalFleet, shells: AsyncsshNodeShells
) -> None:
    """A bastion whose sshd is down fails the connect with a line naming the bastion."""
    fleet.kill_sshd("node1")
    try:
        with pytest.raises(NodeUnreachable) as failed:
            await whoami(shells, NodeConfig("app", "app", "/srv/hello"))
    finally:
        fleet.start_sshd("node1")
    message = str(failed.value)
    assert message.startswith("jump host bastion of app (") and "\n" not in message


async def test_an_alias_missing_from_the_ssh_config_is_named(shells: AsyncsshNodeShells) -> None:
    """A host that is neither a Host of the config nor a DNS name says so, naming it."""
    with pytest.raises(NodeUnreachable) as failed:
        await whoami(shells, NodeConfig("web9", "web9-nowhere", "/srv/hello"))
    assert "'web9-nowhere' is no Host of the ssh config" in str(failed.value)


async def test_a_node_behind_a_jump_host_can_have_its_key_fetched(
    fleet: LocalFleet, config: Path
) -> None:
    """`nodes trust` reaches a node behind a bastion and gets the node's key, not the bastion's."""
    said = await fetch_host_key(NodeConfig("app", "app", "/srv/hello"), [str(config)])
    app = fleet.nodes[2]
    assert said == ("app", app.known_hosts_line, app.host_key_fingerprint)


async def test_the_first_unpinned_key_on_a_route_is_the_jump_hosts(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    """With the second bastion's key unknown, its key is fetched (through the first), named."""
    known = tmp_path / "known_hosts"
    known.write_text("".join(f"{n.known_hosts_line}\n" for n in fleet.nodes if n.name != "node2"))
    config = ssh_config(fleet, tmp_path / "config", known)
    said = await fetch_host_key(NodeConfig("app", "app", "/srv/hello"), [str(config)])
    inner = fleet.nodes[1]
    assert said == ("jump host inner of app", inner.known_hosts_line, inner.host_key_fingerprint)


def accepted(fleet: LocalFleet, name: str) -> int:
    """Logins the node's sshd accepted so far, from its own log."""
    log = fleet.root / "nodes" / name / "node.log"
    return log.read_text().count("Accepted publickey")


def disconnected(fleet: LocalFleet, name: str) -> int:
    log = fleet.root / "nodes" / name / "node.log"
    return log.read_text().count("Disconnected from user")


async def test_nodes_behind_the_same_bastions_share_one_connection_to_them(
    fleet: LocalFleet, shells: AsyncsshNodeShells
) -> None:
    """Two nodes behind bastion,inner: one login on each bastion; both closed after the last."""
    before = {name: accepted(fleet, name) for name in ("node1", "node2")}
    gone_before = disconnected(fleet, "node1")
    conns = await asyncio.gather(
        *(shells.connect(NodeConfig(n, "app", "/srv/hello")) for n in ("app-a", "app-b"))
    )
    for conn in conns:
        assert (await conn.run("true")).exit_status == 0
    assert {name: accepted(fleet, name) - before[name] for name in before} == {
        "node1": 1,
        "node2": 1,
    }
    for conn in conns:
        conn.close()
    deadline = time.monotonic() + 10
    while disconnected(fleet, "node1") == gone_before:  # the bastion's session ends too
        assert time.monotonic() < deadline, "the bastion connection stayed open"
        await asyncio.sleep(0.05)
