"""Jump-host connections shared by every node behind the same bastions.

Twenty nodes behind one bastion make one connection to it, not twenty: the nodes' connections
are direct-tcpip channels through it (not subject to MaxSessions), and the bastion's
MaxStartups sees one handshake. A chain is opened when the first node needs it, reopened if it
dropped, and closed when the last connection through it closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field

import asyncssh

from edeliver.adapters.local.ssh_config import Hop

Chain = list[asyncssh.SSHClientConnection]
OpenChain = Callable[[], Awaitable[Chain]]


@dataclass
class _Shared:
    conns: Chain
    users: int = 0
    open: bool = field(default=True)

    def usable(self) -> bool:
        return self.open and not self.conns[-1].is_closed()


class JumpPool:
    """The open jump chains of one event loop, by their hops, counted by the connections
    through them."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._chains: dict[tuple[Hop, ...], _Shared] = {}
        self._locks: dict[tuple[Hop, ...], asyncio.Lock] = {}
        self._releases: set[asyncio.Task[None]] = set()

    async def acquire(self, hops: tuple[Hop, ...], open_chain: OpenChain) -> Chain:
        """The chain for `hops`, opened with `open_chain` unless a usable one is shared."""
        self._forget_other_loops()
        async with self._locks.setdefault(hops, asyncio.Lock()):
            shared = self._chains.get(hops)
            if shared is None or not shared.usable():
                shared = self._chains[hops] = _Shared(await open_chain())
            shared.users += 1
            return shared.conns

    def release_when_closed(
        self, hops: tuple[Hop, ...], chain: Chain, conn: asyncssh.SSHClientConnection | None
    ) -> None:
        """Give the chain back once `conn` (None: nothing was opened through it) has closed."""
        task = asyncio.get_running_loop().create_task(self._release(hops, chain, conn))
        self._releases.add(task)  # referenced, so the task is not collected midway
        task.add_done_callback(self._releases.discard)

    async def _release(
        self, hops: tuple[Hop, ...], chain: Chain, conn: asyncssh.SSHClientConnection | None
    ) -> None:
        if conn is not None:
            with suppress(Exception):
                await conn.wait_closed()
        shared = self._chains.get(hops)
        if shared is None or shared.conns is not chain:  # replaced after it dropped
            _close_all(chain)
            return
        shared.users -= 1
        if shared.users == 0:
            shared.open = False
            del self._chains[hops]
            _close_all(chain)

    def _forget_other_loops(self) -> None:
        """Connections and locks belong to one event loop; a command may run several."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._chains, self._locks = loop, {}, {}


def _close_all(chain: Chain) -> None:
    for conn in reversed(chain):
        conn.close()
