"""The local fleet's inventory: its nodes as clients see them, and where each node's files live.

Shared by the fleet (`local_fleet`), the sshd setup (`fleet_sshd`) and the tests that read a
node's files behind its back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from edeliver.adapters.node.ssh_host_keys import known_hosts_pattern

# Node names become Unix user names (max 32 chars) and bare TOML keys.
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,22}$")


@dataclass(frozen=True)
class FleetNode:
    """One node as a client sees it, plus where its private files live on this machine."""

    name: str
    host: str
    port: int
    user: str
    path: str  # the deploy path as the node sees it
    root: Path  # the real directory the node sees at `path`
    home: Path  # the real directory the node sees as the user's home
    epmd_port: int
    host_public_key: str  # "ssh-ed25519 AAAA..."
    host_key_fingerprint: str  # "SHA256:..."

    @property
    def known_hosts_line(self) -> str:
        return f"{known_hosts_pattern(self.host, self.port)} {self.host_public_key}"

    def local(self, node_path: str) -> Path:
        """The real path of `node_path`, a path under the deploy path as the node sees it."""
        relative = PurePosixPath(node_path).relative_to(self.path)
        return self.root / relative


class NodeFiles(NamedTuple):
    """Where one node's generated files live: all in the node's own dir under the fleet root."""

    base: Path
    deploy: Path
    home: Path
    host_key: Path
    config: Path
    init: Path
    pid_file: Path
    log: Path

    @classmethod
    def at(cls, base: Path) -> NodeFiles:
        return cls(
            base, base / "deploy", base / "home", base / "ssh_host_ed25519_key",
            base / "sshd_config", base / "init.sh", base / "sshd.pid", base / "node.log",
        )  # fmt: skip


def checked_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"bad node name {name!r}: lower-case letters, digits, '-', '_'")
    return name


def checked_deploy_path(path: str) -> str:
    pure = PurePosixPath(path)
    if not pure.is_absolute() or len(pure.parts) < 2 or str(pure) != path:
        raise ValueError(f"deploy path must be a normalised absolute path below /: {path!r}")
    return path
