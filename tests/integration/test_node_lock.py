"""The node lock on real sshd nodes: flock held by a holder process on the deployer's connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from edeliver.adapters.node import node_lock, switch_scripts
from edeliver.adapters.node import node_scripts as ns
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.ssh import AsyncsshNodeShell, AsyncsshNodeShells
from edeliver.core.domain.errors import LockHeldError, NodeError
from edeliver.core.ports import NodeClaim
from tests.contract.conftest import node_config
from tests.support.waiting import wait_for_async

FleetFactory = Callable[..., LocalFleet]
FIRST = NodeClaim("11111111-aaaa-4000-8000-000000000001", "blue", "alice@ci")
Opener = Callable[[], Awaitable[AsyncsshNodeShell]]
SECOND = NodeClaim("22222222-bbbb-4000-8000-000000000002", "green", "bob@laptop")


@pytest.fixture
async def opener(fleet: FleetFactory) -> AsyncIterator[Opener]:
    """Opens shells on one real node; closes every one it opened."""
    local = fleet(1)
    shells = AsyncsshNodeShells(known_hosts=str(local.known_hosts))
    config = node_config(local, local.nodes[0])
    opened: list[AsyncsshNodeShell] = []

    async def open_one() -> AsyncsshNodeShell:
        opened.append(await shells.open(config))
        return opened[-1]

    yield open_one
    await asyncio.gather(*(s.close() for s in opened), return_exceptions=True)


async def _wait_until_free(shell: AsyncsshNodeShell, seconds: float) -> None:
    """Ask the node every half second until its lock is free; fail after `seconds`."""

    async def free() -> bool:
        return await shell.lock_holder() is None

    await wait_for_async(free, seconds, "the node lock to be free", every=0.5)


async def test_a_second_deployment_is_refused_naming_the_holder_of_the_node(opener: Opener) -> None:
    """While one deployment holds a node, another's claim fails naming its id, env and deployer."""
    first, second = await opener(), await opener()
    await first.hold(FIRST)
    with pytest.raises(LockHeldError) as refused:
        await second.hold(SECOND)
    said = str(refused.value)
    assert "locked by deployment 11111111 (blue, deployer alice@ci) since 20" in said
    assert "nothing was changed on any node" in said


async def test_the_lock_is_free_once_its_holder_closed_and_the_next_taker_gets_a_new_generation(
    opener: Opener,
) -> None:
    """Closing the shell releases the node; the next deployment takes it with generation + 1."""
    first, second, reader = await opener(), await opener(), await opener()
    await first.hold(FIRST)
    holder = await reader.lock_holder()
    assert holder is not None and holder.deployment_id == FIRST.deployment_id
    await first.close()
    await _wait_until_free(reader, 10)
    await second.hold(SECOND)
    now = await reader.lock_holder()
    assert now is not None and now.deployer == "bob@laptop"
    assert now.generation == holder.generation + 1


async def test_a_holder_whose_heartbeats_stop_gives_the_node_up_by_the_nodes_clock(
    opener: Opener,
) -> None:
    """A deployer that lost its network (connection up, no heartbeats) loses the node in BOUND s."""
    first, reader = await opener(), await opener()
    await first.hold(FIRST)
    assert first._lock is not None
    first._lock._beats.cancel()  # the heartbeats stop; the connection stays up
    assert await reader.lock_holder() is not None
    await _wait_until_free(reader, node_lock.BOUND + 10)


async def test_a_switch_script_of_an_older_generation_refuses_to_touch_current(
    opener: Opener,
) -> None:
    """After the lock moved on, a script given the old generation exits 9 and current stays."""
    first, second = await opener(), await opener()
    await first.hold(FIRST)
    assert first._lock is not None
    stale = first._lock.generation
    await first.close()
    await second.hold(SECOND)
    layout = ns.Layout(second.node.path, "hello")
    release = f"{layout.path}/releases/1.0"
    await second.script_output(f"mkdir -p {release}/bin {release}/releases/1.0")
    switch = switch_scripts.Switch((), "1.0", False, None, ())
    script = switch_scripts.switch_script(layout, ns.ReleaseCommands(), switch, 1, stale)
    result = await second.run_script(script)
    assert result.exit_status == 9, result.stderr
    assert "a newer deployer holds it" in str(result.stderr)
    assert (await second.script_output(f"readlink {layout.path}/current || true")).strip() == ""


async def test_a_deployer_reconnecting_after_another_took_the_node_no_longer_acts_on_it(
    opener: Opener,
) -> None:
    """A lost connection is retaken only if nobody held the node since; else the deployer's
    next script fails naming the takeover, and the node is left alone."""
    first, second = await opener(), await opener()
    await first.hold(FIRST)
    await first.script_output("true")
    first._conn.close()  # the connection is lost: its holder ends
    await first._conn.wait_closed()
    await second.hold(SECOND)
    await second.close()
    with pytest.raises(NodeError, match="another deployer took the node while this one's"):
        await first.script_output("true")


async def test_a_deployer_reconnecting_to_a_node_nobody_took_holds_it_again(
    opener: Opener,
) -> None:
    """After a lost connection, the same deployer retakes its node with the next generation."""
    first, reader = await opener(), await opener()
    await first.hold(FIRST)
    assert first._lock is not None
    before = first._lock.generation
    first._conn.close()
    await first._conn.wait_closed()
    await first.script_output("true")
    holder = await reader.lock_holder()
    assert holder is not None and holder.generation == before + 1
    assert holder.deployment_id == FIRST.deployment_id


async def test_the_holder_runs_a_read_only_script_once_it_holds_the_node(
    fleet: FleetFactory,
) -> None:
    """`then` (the kept cookie's read, in `hold`) runs on the lock's own channel once the lock
    is held: its lines come back with the lock, and the heartbeats that follow still keep it."""
    local = fleet(1)
    shells = AsyncsshNodeShells(known_hosts=str(local.known_hosts))
    config = node_config(local, local.nodes[0])
    conn = await shells.connect(config)
    try:
        then = "echo first\nread -r eaten || echo 'stdin is not the heartbeats'\necho second\n"
        lock = await node_lock.NodeLock.take(config.name, conn, config.path, FIRST, then=then)
        assert lock.said == "first\nstdin is not the heartbeats\nsecond\n"
        await asyncio.sleep(node_lock.INTERVAL + 1)
        assert lock.held
        other = await shells.open(config)
        try:
            with pytest.raises(LockHeldError):
                await other.hold(SECOND)
        finally:
            await other.close()
        await lock.release()
    finally:
        conn.close()
