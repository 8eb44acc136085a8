"""Faults made on real nodes, and what the nodes say afterwards: crafted archives, a small disk
under a node's uploads, a partition of a node's sshd port. Each helper undoes what it did and
touches only what it made (its own mount, its own nftables table)."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet
from tests.support.nodes import ssh


def tampered_release(original: Path, target: Path, link: str = "bin/evil") -> Path:
    """`original` plus a symlink `link -> /tmp` owned by "evil user" (a name with a space,
    which shifted the columns of `tar -tvzf` and hid the link from the old check)."""
    with tarfile.open(original, "r:gz") as source, tarfile.open(target, "w:gz") as out:
        for member in source:
            out.addfile(member, source.extractfile(member) if member.isfile() else None)
        evil = tarfile.TarInfo(link)
        evil.type, evil.linkname = tarfile.SYMTYPE, "/tmp"
        evil.uname = evil.gname = "evil user"
        out.addfile(evil)
    return target


def padded_release(original: Path, target: Path, extra: int) -> Path:
    """`original` plus `extra` random bytes in lib/padding.bin: an upload that takes a while."""
    with (
        tarfile.open(original, "r:gz") as source,
        tarfile.open(target, "w:gz", compresslevel=1) as out,
    ):
        for member in source:
            out.addfile(member, source.extractfile(member) if member.isfile() else None)
        padding = tarfile.TarInfo("lib/padding.bin")
        padding.size = extra
        out.addfile(padding, io.BytesIO(os.urandom(extra)))
    return target


def listed(fleet: LocalFleet, node: FleetNode, directory: str) -> list[str]:
    """The names in `directory` (a path on the node), as the node's own `ls` sees them."""
    said = ssh(fleet, node, f"ls -A {shlex.quote(directory)}")
    assert said.returncode == 0, said.stderr
    return said.stdout.split()


def modes(fleet: LocalFleet, node: FleetNode, *patterns: str) -> dict[str, str]:
    """The octal mode of each path the node's shell expands `patterns` (under the deploy path)
    to, asked with `stat` on the node."""
    globs = " ".join(f"{shlex.quote(node.path)}/{p}" for p in patterns)
    said = ssh(fleet, node, f"stat -c '%a %n' {globs}")
    assert said.returncode == 0, said.stderr
    found = (line.split(" ", 1) for line in said.stdout.splitlines())
    return {path.removeprefix(node.path + "/"): mode for mode, path in found}


@dataclass(frozen=True)
class NodeState:
    """What a node says about itself: where current points, whether that is a complete
    release, which versions its BEAMs run."""

    current: str | None
    complete: bool
    running: tuple[str, ...]


def node_state(fleet: LocalFleet, node: FleetNode) -> NodeState:
    path = shlex.quote(node.path)
    said = ssh(
        fleet, node,
        f"cd {path} || exit 1; c=$(readlink current); echo \"current=$c\"; "
        "[ -n \"$c\" ] && [ -x \"$c/bin/hello\" ] && [ -d \"$c/releases/${c#releases/}\" ] "
        "&& echo complete; "
        # Only BEAMs (by argv[0]): this very command's shell holds the pattern too.
        "for f in /proc/[0-9]*/cmdline; do "
        "case $(tr '\\0' '\\n' <\"$f\" 2>/dev/null | head -n 1) in */beam.smp) "
        "tr '\\0' ' ' <\"$f\" | grep -o -e '-boot [^ ]*/releases/[^/ ]*/start' ;; esac; "
        "done | sort",
    )  # fmt: skip
    lines = said.stdout.splitlines()
    current = lines[0].removeprefix("current=").removeprefix("releases/") if lines else ""
    running = tuple(sorted(line.split("/")[-2] for line in lines if line.startswith("-boot ")))
    return NodeState(current or None, "complete" in lines, running)


@contextmanager
def small_disk(fleet: LocalFleet, node: FleetNode, below: str, size: str) -> Iterator[str]:
    """A tmpfs of `size` mounted at `below` (under the deploy path) inside the node's mount
    namespace, owned by the node's user; unmounted afterwards. Yields its path on the node
    (only the node sees what is in it: this machine sees the dir under it)."""
    mountpoint = f"{node.path}/{below}"
    local = node.local(mountpoint)
    local.mkdir(parents=True, exist_ok=True)
    owner = node.root.stat()
    for part in [local, *local.parents]:
        if part == node.root:
            break
        os.chown(part, owner.st_uid, owner.st_gid)
    options = f"size={size},mode=0700,uid={owner.st_uid},gid={owner.st_gid}"
    enter = fleet.entering(node.name)
    subprocess.run([*enter, "mount", "-t", "tmpfs", "-o", options, "tmpfs", mountpoint], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run([*enter, "umount", "-l", mountpoint], check=True)


class Partition:
    """An nftables table of this test's own that drops every packet to or from one node's
    sshd port: a node cut off the network mid-step. `heal()` deletes the table."""

    def __init__(self, node: FleetNode) -> None:
        self.table = f"edeliver_partition_{os.getpid()}_{node.port}"
        self.port, self.made = node.port, False

    def cut(self) -> None:
        rules = (
            f"table inet {self.table} {{\n"
            "  chain input { type filter hook input priority -10; policy accept;\n"
            f"    tcp dport {self.port} drop\n    tcp sport {self.port} drop\n  }}\n}}\n"
        )
        subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
        self.made = True

    def heal(self) -> None:
        if self.made:
            subprocess.run(["nft", "delete", "table", "inet", self.table], check=True)
            self.made = False

    def __enter__(self) -> Partition:
        return self

    def __exit__(self, *_: object) -> None:
        self.heal()
