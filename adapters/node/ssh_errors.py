"""The one place where asyncssh's and the OS's errors become ours, and which of them a busy
sshd gives that are worth another try (with backoff).
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable
from typing import Any

import asyncssh

from edeliver.adapters.local.ssh_config import Hop
from edeliver.adapters.node.ssh_host_keys import KnownHosts, host_key_error
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import EdeliverError, NodeError, NodeUnreachable

RETRIES = 4  # tries of a connect or a channel open that a busy sshd refused


def ssh_error(
    node: NodeConfig,
    error: BaseException,
    doing: str,
    known: KnownHosts | None = None,
    offered: asyncssh.SSHKey | None = None,
    hop: Hop | None = None,
    tunnelled: bool = False,
) -> EdeliverError:
    """The one place where asyncssh's and the OS's errors become ours."""
    where = f"{node.name} ({node.address})"
    if isinstance(error, asyncssh.HostKeyNotVerifiable):
        return host_key_error(where, known, offered)  # `nodes trust` pins jump hosts' too
    if isinstance(error, socket.gaierror) and hop is not None and not hop.from_config:
        return NodeUnreachable(
            f"{where}: {hop.name!r} is no Host of the ssh config and no known host name "
            f"({error.strerror})"
        )
    if isinstance(error, asyncssh.ChannelOpenError) and tunnelled:
        return NodeUnreachable(f"{where}: the jump host before it cannot reach it: {error.reason}")
    for kind, ours, say in _MAPPING:
        if isinstance(error, kind):
            made = ours(f"{where}: {say(error, doing, node)}")
            if isinstance(made, NodeUnreachable):
                made.passing = _lost(error)  # a rollback waits such a node out
            return made
    return NodeError(f"{where}: {doing} failed: {error}")


_Say = Callable[[Any, str, NodeConfig], str]
_Kinds = type[BaseException] | tuple[type[BaseException], ...]
# First match wins. Scripts are timed by `run_script` itself (so that it can stop them on the
# node), never by asyncssh, so asyncssh's TimeoutError does not arise here.
_MAPPING: tuple[tuple[_Kinds, type[NodeError], _Say], ...] = (
    (asyncssh.PermissionDenied, NodeUnreachable,
     lambda e, _, n: f"authentication as {n.user or 'the default user'} failed: {e.reason}"),
    (asyncssh.ProcessError, NodeError,
     lambda e, doing, _: f"{doing} failed (exit {e.exit_status}): {e.stderr!s}"),
    (asyncssh.ChannelOpenError, NodeUnreachable,
     lambda e, doing, _: f"{doing}: the node refused a new session: {e.reason}"),
    ((asyncssh.DisconnectError, asyncssh.SFTPConnectionLost), NodeUnreachable,
     lambda e, doing, _: f"connection lost while {doing}: {e}"),
    (asyncssh.SFTPError, NodeError, lambda e, doing, _: f"{doing}: SFTP error: {e.reason}"),
    (TimeoutError, NodeUnreachable, lambda e, doing, _: f"timed out {doing}"),
    (OSError, NodeUnreachable, lambda e, doing, _: f"cannot connect: {e.strerror or e}"),
)  # fmt: skip


def _lost(cause: BaseException) -> bool:
    """The node could not be reached or the connection dropped (not a refused login or a
    refused session): what a rebooting node or a restarting sshd looks like."""
    lost = OSError | asyncssh.DisconnectError | asyncssh.SFTPConnectionLost
    return isinstance(cause, lost) and not isinstance(cause, asyncssh.PermissionDenied)


def retryable(error: BaseException) -> bool:
    """Refusals a busy sshd gives (MaxStartups drops, resets), worth another try."""
    lost = asyncssh.ConnectionLost | asyncssh.ChannelOpenError | ConnectionResetError
    return isinstance(error, lost)


async def backoff(attempt: int) -> None:
    await asyncio.sleep(0.2 * 2**attempt * (1 + random.random()))  # noqa: S311  jitter only
