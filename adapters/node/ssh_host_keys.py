"""Host keys: which files pin them, what a server offered, and the errors when they differ.

Verification is never switched off: an unknown key is `HostKeyError`, a key other than the
pinned one `HostKeyChanged` (exit 3 either way); `pin_host_key` is how `edeliver nodes trust`
records a key the user confirmed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncssh

from edeliver.core.domain.errors import HostKeyChanged, HostKeyError


def known_hosts_pattern(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: `host` on port 22, `[host]:port` otherwise
    (its client looks up `host` alone for port 22, so `[host]:22` never matches)."""
    return host if port == 22 else f"[{host}]:{port}"


def known_hosts_line(host: str, port: int, key: asyncssh.SSHKey) -> str:
    """The known_hosts line pinning `key` for `host`:`port`, as OpenSSH writes it."""
    public = " ".join(key.export_public_key().decode().split()[:2])
    return f"{known_hosts_pattern(host, port)} {public}"


class KnownHosts:
    """The known_hosts files, read once per connect; remembers whether the host had keys."""

    def __init__(self, files: Sequence[str]) -> None:
        self.files = list(files)
        self.known = asyncssh.SSHKnownHosts()
        for file in self.files:
            if os.path.isfile(file):
                self.known.load(Path(file).read_text())
        self.host_had_keys = False

    def match(self, host: str, addr: str, port: int | None) -> Any:
        found = self.known.match(host, addr, port)
        self.host_had_keys = self.host_had_keys or bool(found[0] or found[1])
        return found


class HostKeyCatcher(asyncssh.SSHClient):
    """Keeps the host key the server offered when known_hosts did not trust it; trusts none."""

    offered: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.offered = key
        return False


def pin_host_key(known_hosts: str | os.PathLike[str], line: str) -> None:
    """Pin a host key: replace the lines of the same host pattern in `known_hosts`, or add it.

    Lines are compared by their first field as written: hashed (`|1|...`) entries stay.
    """
    path = Path(known_hosts).expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pattern = line.split(maxsplit=1)[0]
    old = path.read_text().splitlines() if path.exists() else []
    kept = [entry for entry in old if entry.split()[:1] != [pattern]]
    path.write_text("".join(f"{entry}\n" for entry in [*kept, line]))


def host_key_error(
    where: str,
    known: KnownHosts | None,
    offered: asyncssh.SSHKey | None,
    pin_with: str = "`edeliver nodes trust ENV`",
) -> HostKeyError:
    files = ", ".join(known.files) if known else "known_hosts"
    offers = f" It offers {offered.get_fingerprint()}." if offered else ""
    if known and known.host_had_keys:
        return HostKeyChanged(
            f"{where}: the host key has CHANGED since it was pinned in {files}.{offers} This "
            "may be a man-in-the-middle attack; if the node was reinstalled, pin its new key."
        )
    return HostKeyError(
        f"{where}: unknown host key (not in {files}).{offers} Check it, then pin it with "
        f"{pin_with}."
    )
