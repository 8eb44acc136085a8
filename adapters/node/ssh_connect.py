"""Verified SSH connections to nodes: through their jump hosts (shared by nodes behind the same
bastions), with their identity files and known host keys, retried with backoff when a busy sshd
refuses (MaxStartups 10:30:100: at most `connect_limit` connects in flight).

Host keys are always verified, against the given known_hosts file or else the user's OpenSSH
ones (~/.ssh/config's UserKnownHostsFile, else ~/.ssh/known_hosts); a config that turns checking
off is ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import asyncssh
from asyncssh.encryption import get_default_encryption_algs

from edeliver.adapters.local.ssh_config import (
    DEFAULT_KNOWN_HOSTS,
    Hop,
    SshRoute,
    config_files,
    resolve,
)
from edeliver.adapters.node.ssh_errors import RETRIES, backoff, retryable, ssh_error
from edeliver.adapters.node.ssh_host_keys import HostKeyCatcher, KnownHosts, known_hosts_line
from edeliver.adapters.node.ssh_jumps import JumpPool
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import HostKeyChanged, HostKeyError, NodeUnreachable, UsageError

JUMP_HOST = "jump host"  # how errors name a ProxyJump hop
# AES-GCM first, then asyncssh's other defaults in their order: with AES in hardware it costs
# a sixth of ChaCha20-Poly1305's CPU per packet in asyncssh (~4 µs against ~23 µs, measured),
# the largest part of the deployer's Python CPU at a few hundred packets per node. Both are
# AEAD ciphers OpenSSH offers by default; a server offering no GCM cipher gets the others.
_GCM = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
_DEFAULT_ALGS = [alg.decode() for alg in get_default_encryption_algs()]
ENCRYPTION_ALGS = [
    *(alg for alg in _GCM if alg in _DEFAULT_ALGS),
    *(alg for alg in _DEFAULT_ALGS if alg not in _GCM),
]


class SshConnections:
    """Opens verified connections to nodes and their jump hosts, `connect_limit` at a time."""

    def __init__(
        self,
        known_hosts: str | None = None,
        *,
        ssh_config: Sequence[str] | None = None,
        connect_limit: int = 8,
        connect_timeout: float = 20.0,
    ) -> None:
        self.known_hosts, self.ssh_config = known_hosts, ssh_config
        self.connect_timeout = connect_timeout
        self._connects = asyncio.Semaphore(connect_limit)
        self._jumps = JumpPool()

    async def connect(self, node: NodeConfig) -> asyncssh.SSHClientConnection:
        """Connect through the node's jump hosts, if any, each host key verified; retries;
        NodeUnreachable / HostKeyError naming the node, or the jump host at fault."""
        route = self.route(node)
        if not route.jumps:
            return await self._connect_hop(node, route.target, None)
        # Nodes behind the same bastions share one chain of jump connections.
        jumps = await self._jumps.acquire(route.jumps, lambda: self.open_jumps(node, route))
        conn = None
        try:
            conn = await self._connect_hop(node, route.target, jumps[-1])
            return conn
        finally:
            self._jumps.release_when_closed(route.jumps, jumps, conn)

    def route(self, node: NodeConfig) -> SshRoute:
        """Where the node is, per the ssh config, its toml values winning."""
        return resolve(node, self._config())

    async def open_jumps(
        self,
        node: NodeConfig,
        route: SshRoute,
        opened: list[asyncssh.SSHClientConnection] | None = None,
    ) -> list[asyncssh.SSHClientConnection]:
        """A verified connection to each jump host of the route, each through the one before
        (collected in `opened`: on a failure, its length is the index of the hop at fault)."""
        opened = [] if opened is None else opened
        try:
            for hop in route.jumps:
                named = replace(node, name=f"{JUMP_HOST} {hop.name} of {node.name}")
                opened.append(await self._connect_hop(named, hop, opened[-1] if opened else None))
        except BaseException:
            close_all(opened)
            raise
        return opened

    async def _connect_hop(
        self, node: NodeConfig, hop: Hop, tunnel: asyncssh.SSHClientConnection | None
    ) -> asyncssh.SSHClientConnection:
        """One verified connection to `hop`, every setting explicit (the config is resolved)."""
        known = KnownHosts(self._known_hosts_files(hop))
        shown = replace(node, host=hop.host, port=hop.port, user=hop.user)
        keys = client_keys(node, hop)
        for attempt in range(RETRIES):
            client = HostKeyCatcher()
            try:
                async with self._connects:
                    return await asyncssh.connect(
                        hop.host, hop.port, tunnel=tunnel, config=[], username=hop.user or (),
                        client_keys=keys or (),
                        known_hosts=known.match, client_factory=lambda c=client: c,
                        connect_timeout=hop.connect_timeout or self.connect_timeout,
                        keepalive_interval=15, keepalive_count_max=3,
                        encryption_algs=ENCRYPTION_ALGS,
                    )  # fmt: skip
            except (asyncssh.Error, OSError) as error:
                if not (retryable(error) and attempt + 1 < RETRIES):
                    raise ssh_error(
                        shown, error, "connecting", known, client.offered, hop, tunnel is not None
                    ) from error
            await backoff(attempt)
        raise AssertionError("unreachable")

    def _config(self) -> list[str]:
        if self.ssh_config is not None:
            return list(self.ssh_config)
        return config_files(None, Path.cwd())

    def _known_hosts_files(self, hop: Hop) -> list[str]:
        if self.known_hosts is not None:
            return [self.known_hosts]
        return list(hop.known_hosts) or [str(Path(DEFAULT_KNOWN_HOSTS).expanduser())]


def client_keys(node: NodeConfig, hop: Hop) -> Sequence[asyncssh.SSHKeyPair]:
    """The hop's identity files, loaded before connecting so that a missing, passphrase-protected
    or malformed one is one line naming the node and the file (asyncssh names neither); none
    given: the agent and the default keys, as ssh does."""
    keys: list[asyncssh.SSHKeyPair] = []
    for path in hop.identity_files:
        try:
            keys.extend(asyncssh.load_keypairs(path))
        except (asyncssh.KeyImportError, OSError) as error:
            raise UsageError(f"{node.name}: identity_file {path}: {_unusable(error)}") from None
    return keys


def _unusable(error: asyncssh.KeyImportError | OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, OSError):
        return f"cannot be read ({error.strerror or error})"
    if "passphrase" in str(error).lower():
        return (
            "the key is passphrase-protected and Edeliver asks for no passphrase: add it to "
            "ssh-agent and leave identity_file out, or use a key without one"
        )
    return f"not a private key ({error})"


def close_all(conns: Sequence[asyncssh.SSHClientConnection]) -> None:
    for conn in reversed(conns):
        conn.close()


async def fetch_host_key(
    node: NodeConfig, ssh_config: Sequence[str] | None = None, known_hosts: str | None = None
) -> tuple[str, str, str]:
    """The first host key on the node's route that is not pinned yet, a jump host's before the
    node's: whose it is, its known_hosts line and its fingerprint, for the user to confirm.
    Fetched through the hops before it, whose keys are verified; a changed key is refused."""
    shells = SshConnections(known_hosts, ssh_config=ssh_config)
    route = shells.route(node)
    reached: list[asyncssh.SSHClientConnection] = []
    try:
        jumps = await shells.open_jumps(node, route, reached)
        hop, whose = route.target, node.name
    except HostKeyError as error:
        if isinstance(error, HostKeyChanged):
            raise
        hop = route.jumps[len(reached)]
        whose = f"{JUMP_HOST} {hop.name} of {node.name}"
        jumps = await shells.open_jumps(node, replace(route, jumps=route.jumps[: len(reached)]))
    try:
        key = await asyncssh.get_server_host_key(
            hop.host, hop.port, tunnel=jumps[-1] if jumps else None, config=[]
        )
    except (asyncssh.Error, OSError) as error:
        shown = replace(node, name=whose, host=hop.host, port=hop.port, user=hop.user)
        raise ssh_error(shown, error, "fetching its host key", hop=hop) from error
    finally:
        close_all(jumps)
    if key is None:
        raise NodeUnreachable(f"{whose} ({hop.address}) offered no host key")
    return whose, known_hosts_line(hop.host, hop.port, key), key.get_fingerprint()
