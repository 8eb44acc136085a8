"""Where a node really is: its OpenSSH client config resolved for it, the way `ssh` would.

`~/.ssh/config` (or the files `ssh_config = ...` in edeliver.toml names) gives HostName, Port,
User, IdentityFile, UserKnownHostsFile, ProxyJump and ConnectTimeout; a value written in
edeliver.toml for the node wins over the file. A ProxyJump list (`a,b`, each `[user@]host[:port]`
or an alias of its own) becomes the hops of the route, each resolved the same way; a hop's own
ProxyJump is not followed, as `ssh -J` does not either. The connect path opens every hop itself,
host key verified, because asyncssh's own `tunnel="user@host"` would skip the known_hosts file.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncssh.config import SSHClientConfig

from edeliver.core.domain.config import NodeConfig

DEFAULT_PORT = 22
DEFAULT_CONFIG = "~/.ssh/config"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


@dataclass(frozen=True)
class Hop:
    """One SSH endpoint as resolved: the name written, and where it leads."""

    name: str  # as written: a node's host, or one entry of a ProxyJump list
    host: str
    port: int
    user: str | None
    identity_files: tuple[str, ...] = ()
    known_hosts: tuple[str, ...] = ()  # from UserKnownHostsFile; empty: the default file
    connect_timeout: float | None = None

    @property
    def address(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}"

    @property
    def from_config(self) -> bool:
        """Whether an ssh config Host block renamed it (an alias), so DNS is not its source."""
        return self.host != self.name


@dataclass(frozen=True)
class SshRoute:
    """A node's endpoint and the jump hosts before it, first hop first."""

    target: Hop
    jumps: tuple[Hop, ...] = ()

    @property
    def address(self) -> str:
        """`user@host:port`, then `via` each jump host: what plan and status show."""
        via = "".join(f" via {jump.address}" for jump in self.jumps)
        return f"{self.target.address}{via}"


def config_files(ssh_config: str | None, project: Path) -> list[str]:
    """The ssh config files to read: the toml's (relative to the project), else ~/.ssh/config."""
    if ssh_config:
        path = Path(ssh_config).expanduser()
        return [str(path if path.is_absolute() else project / path)]
    default = Path(DEFAULT_CONFIG).expanduser()
    return [str(default)] if os.access(default, os.R_OK) else []


def resolve(node: NodeConfig, files: Sequence[str]) -> SshRoute:
    """The node's route: the ssh config's values for its host, its explicit toml values winning."""
    options = _options(files, node.host, node.user, node.port)
    target = _hop(node.host, options, node.identity_file)
    return SshRoute(target, _jumps(options.get("ProxyJump"), files))


def _jumps(proxy_jump: Any, files: Sequence[str]) -> tuple[Hop, ...]:
    if not proxy_jump or str(proxy_jump).lower() == "none":
        return ()
    hops = []
    for entry in str(proxy_jump).split(","):
        user, host, port = _split_jump(entry.strip())
        hops.append(_hop(host, _options(files, host, user, port), None))
    return tuple(hops)


def _split_jump(entry: str) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]` (or `ssh://…`) of one ProxyJump entry; the port is None if unsaid."""
    entry = entry.removeprefix("ssh://")
    user, _, rest = entry.rpartition("@")
    host, colon, port = rest.partition(":")
    return user or None, host, int(port) if colon and port.isdigit() else None


def _options(files: Sequence[str], host: str, user: str | None, port: int | None) -> Any:
    """asyncssh's reading of the config files for `host`; given user/port are fixed first,
    as OpenSSH fixes command-line values before reading the file."""
    config = SSHClientConfig.load(
        None, list(files), False, False, False, getpass.getuser(),
        () if user is None else user, host, () if port is None else port,
    )  # fmt: skip
    return config


def _hop(name: str, options: Any, identity_file: str | None) -> Hop:
    identities = (identity_file,) if identity_file else tuple(options.get("IdentityFile", ()))
    timeout = options.get("ConnectTimeout")
    return Hop(
        name=name,
        host=str(options.get("Hostname", name)),
        port=int(options.get("Port", DEFAULT_PORT)),
        user=options.get("User"),
        identity_files=tuple(str(Path(f).expanduser()) for f in identities),
        known_hosts=tuple(str(Path(f).expanduser()) for f in options.get("UserKnownHostsFile", ())),
        connect_timeout=float(timeout) if timeout else None,
    )


def resolved_addresses(nodes: Sequence[NodeConfig], files: Sequence[str]) -> dict[str, str]:
    """Each node's resolved address (`user@host:port via …`), by node name, for plan/status."""
    return {node.name: resolve(node, files).address for node in nodes}
