"""The local test fleet: real sshd nodes on loopback that behave like separate hosts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.local_host import comm
from tests.support.waiting import wait_for_async

FleetFactory = Callable[..., LocalFleet]


def connect(fleet: LocalFleet, node: FleetNode, known_hosts: Path | None = None) -> Any:
    """An asyncssh connection that verifies the host key against the fleet's known_hosts."""
    return asyncssh.connect(
        node.host,
        node.port,
        username=node.user,
        known_hosts=str(known_hosts or fleet.known_hosts),
        client_keys=[str(fleet.client_key)],
        agent_path=None,
        connect_timeout=5,
    )


async def run(fleet: LocalFleet, node: FleetNode, command: str) -> str:
    async with connect(fleet, node) as conn:
        result = await conn.run(command, check=True, timeout=20)
        return str(result.stdout)


async def run_all(fleet: LocalFleet, command: str) -> list[str]:
    return list(await asyncio.gather(*(run(fleet, node, command) for node in fleet.nodes)))


async def test_each_node_answers_as_its_own_user_with_its_own_epmd_port(
    fleet: FleetFactory,
) -> None:
    """Every node has its own user, home and ERL_EPMD_PORT, seen through a verified host key."""
    local = fleet(3)
    answers = await run_all(local, 'echo "$(id -un) $HOME $ERL_EPMD_PORT"')
    expected = [f"{n.user} /home/{n.user} {n.epmd_port}" for n in local.nodes]
    assert [a.strip() for a in answers] == expected
    assert len({n.epmd_port for n in local.nodes} | {n.port for n in local.nodes}) == 6


async def test_a_file_written_at_the_deploy_path_on_one_node_is_invisible_on_another(
    fleet: FleetFactory,
) -> None:
    """The same /srv/hello shows each node's own private dir, owned by the node's user."""
    local = fleet(3)
    node1, node2, _ = local.nodes
    await run(local, node1, "touch /srv/hello/only-on-node1")
    listing = await run(local, node2, "ls -A /srv/hello; stat -c %U /srv/hello")
    assert listing.split() == [node2.user]
    assert (node1.root / "only-on-node1").exists()
    assert not (node2.root / "only-on-node1").exists()
    assert not Path("/srv/hello").is_mount()
    assert not Path("/srv/hello/only-on-node1").exists()


async def test_sftp_uploads_land_in_the_nodes_private_deploy_dir(fleet: FleetFactory) -> None:
    """The internal-sftp subsystem writes through the node's bind mount."""
    local = fleet(2)
    node = local.node("node2")
    async with (
        connect(local, node) as conn,
        conn.start_sftp_client() as sftp,
        sftp.open("/srv/hello/upload.txt", "w") as remote,
    ):
        await remote.write("payload")
    assert node.local("/srv/hello/upload.txt").read_text() == "payload"
    assert not local.node("node1").local("/srv/hello/upload.txt").exists()


async def test_a_killed_sshd_refuses_connections_and_restarts_with_the_same_host_key(
    fleet: FleetFactory,
) -> None:
    """kill_sshd stops only the listener: a started process lives on; start_sshd serves again."""
    local = fleet(2)
    node = local.node("node1")
    await run(local, node, "setsid sleep 300 </dev/null >/dev/null 2>&1 &")
    local.kill_sshd("node1")
    with pytest.raises(OSError):
        await run(local, node, "true")
    assert "sleep" in [comm(pid) for pid in local.processes("node1")]
    local.start_sshd("node1")
    assert local.node("node1").host_key_fingerprint == node.host_key_fingerprint
    assert (await run(local, node, "echo back")).strip() == "back"


async def test_a_rotated_host_key_is_refused_with_the_old_known_hosts(
    fleet: FleetFactory, tmp_path: Path
) -> None:
    """After rotate_host_key a client with the old known_hosts refuses the node."""
    local = fleet(2)
    old = local.node("node2")
    new = local.rotate_host_key("node2")
    assert new.host_key_fingerprint != old.host_key_fingerprint
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await run(local, new, "true")
    fresh = local.write_known_hosts(tmp_path / "fresh_known_hosts")
    async with connect(local, new, known_hosts=fresh) as conn:
        assert (await conn.run("echo ok", check=True)).stdout.strip() == "ok"


async def test_one_beam_node_name_runs_on_every_node_at_once(fleet: FleetFactory) -> None:
    """Detached VMs named hello register in each node's own epmd, which outlives the session."""
    local = fleet(2)
    await run_all(local, "erl -detached -noinput -sname hello")
    names = await asyncio.gather(*(hello_registered(local, node) for node in local.nodes))
    assert all("name hello at port" in listing for listing in names)
    for node in local.nodes:
        assert "epmd" in [comm(pid) for pid in local.processes(node.name)]


async def test_beam_nodes_on_the_fleet_listen_on_loopback_only(fleet: FleetFactory) -> None:
    """epmd and Erlang distribution of a node's VMs bind 127.0.0.1, never other addresses."""
    local = fleet(1)
    (node,) = local.nodes
    await run(local, node, "erl -detached -noinput -sname hello")
    pids = await _listening_pids_when_up(local, node)
    listeners = _listeners_of(set(local.processes(node.name)))
    assert pids and listeners, "the VM and its epmd should be listening"
    assert all(address in ("127.0.0.1", "::1") for address in listeners), listeners


async def _listening_pids_when_up(local: LocalFleet, node: FleetNode) -> list[int]:
    await hello_registered(local, node)
    return local.processes(node.name)


async def hello_registered(fleet: LocalFleet, node: FleetNode) -> str:
    """Wait until the node's epmd lists the VM named hello (so both listen); the listing."""

    async def listing() -> str:
        said = await run(fleet, node, 'epmd -port "$ERL_EPMD_PORT" -names || true')
        return said if "name hello at port" in said else ""

    return await wait_for_async(listing, 30, f"{node.name}'s epmd to list hello")


def _listeners_of(pids: set[int]) -> list[str]:
    """Local addresses of the TCP sockets these processes listen on (from `ss -ltnpH`)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if any(f"pid={pid}," in fields[-1] for pid in pids):
            found.append(fields[3].rsplit(":", 1)[0].strip("[]"))
    return found


async def test_orphans_of_a_session_are_reaped_by_the_nodes_init(fleet: FleetFactory) -> None:
    """A daemonised process that exits leaves no zombie behind, as on a host with an init."""
    local = fleet(1)
    node = local.node("node1")
    orphan = (await run(local, node, "sh -c '(sleep 0.2 & echo $!)'")).strip()

    async def orphan_gone() -> bool:  # a zombie would stay listed
        return (await run(local, node, f"ps -p {orphan} -o stat= || true")).strip() == ""

    await wait_for_async(orphan_gone, 15, f"the orphaned sleep {orphan} to end and be reaped")
    states = await run(local, node, "ps -e -o stat=")
    assert "Z" not in states


async def test_stop_kills_every_process_of_the_fleet_and_nothing_else(
    fleet: FleetFactory,
) -> None:
    """stop() ends sshd, sessions, VMs and epmd of every node, and spares other processes."""
    # Node users are shared by fleets with the same node names: a prefix no other test uses
    # lets "no process of these users is left" speak of this fleet alone.
    local = fleet(2, name_prefix="stopcheck")
    background = "setsid sleep 300 </dev/null >/dev/null 2>&1 &"
    await run_all(local, f"erl -detached -noinput -sname hello; {background}")
    await asyncio.gather(*(hello_registered(local, node) for node in local.nodes))
    pids = {name: local.processes(name) for name in local.names}
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        assert all(len(node_pids) >= 5 for node_pids in pids.values()), pids
        local.stop()
        assert [p for ps in pids.values() for p in ps if _alive(p)] == []
        users = ",".join(node.user for node in local.nodes)
        assert subprocess.run(["pgrep", "-u", users], check=False).returncode == 1
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_toml_nodes_and_known_hosts_describe_every_node(fleet: FleetFactory) -> None:
    """The TOML fragment and known_hosts carry each node's address, user and host key."""
    local = fleet(2, deploy_path="/srv/other", name_prefix="web")
    tables = tomllib.loads(local.toml_nodes())["nodes"]
    assert tables["web2"] == {
        "host": "127.0.0.1",
        "port": local.node("web2").port,
        "user": "edfleet-web2",
        "path": "/srv/other",
        "identity_file": str(local.client_key),
    }
    lines = local.known_hosts.read_text().splitlines()
    assert lines == [node.known_hosts_line for node in local.nodes]
    assert oct(local.client_key.stat().st_mode & 0o777) == "0o600"


async def test_twenty_nodes_start_and_all_answer(fleet: FleetFactory) -> None:
    """A 20-node fleet starts and every node answers as its own user (how fast: a bench figure,
    `bench/fleet_start.py`, not an assertion that a loaded machine would fail)."""
    local = fleet(20)
    limit = asyncio.Semaphore(10)  # sshd's MaxStartups default throttles bursts of connects

    async def hostname(node: FleetNode) -> str:
        async with limit:
            return await run(local, node, "id -un")

    users = await asyncio.gather(*(hostname(node) for node in local.nodes))
    assert [u.strip() for u in users] == [node.user for node in local.nodes]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
