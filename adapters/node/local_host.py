"""What a local fleet needs from this machine: users, ssh keys, free ports, processes.

Linux only, run as root; used by `local_fleet` alone.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import pwd
import secrets
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HOST = "127.0.0.1"
_LOWEST_PORT = 10_000


class FleetError(RuntimeError):
    """The local fleet could not be set up or driven."""


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pid_ns: str
    ns_pid: int  # the pid as seen inside its own (innermost) namespace


def ensure_user(name: str) -> pwd.struct_passwd:
    """The node's own user, created once and reused; its password field must be '*'."""
    try:
        return unlocked(pwd.getpwnam(name))
    except KeyError:
        pass
    useradd = ["useradd", "-m", "-s", "/bin/bash", "-p", "*", "-c", "edeliver local fleet", name]
    result = subprocess.run(useradd, capture_output=True, text=True, check=False)
    if result.returncode not in (0, 9):  # 9: created meanwhile by another fleet
        raise FleetError(f"useradd {name} failed: {result.stderr.strip()}")
    return unlocked(pwd.getpwnam(name))


def unlocked(user: pwd.struct_passwd) -> pwd.struct_passwd:
    # With UsePAM no, sshd refuses accounts whose shadow password starts with '!' (locked).
    for line in Path("/etc/shadow").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == user.pw_name and rest.startswith("!"):
            subprocess.run(["usermod", "-p", "*", user.pw_name], check=True)
    Path(user.pw_dir).mkdir(mode=0o755, exist_ok=True)  # the home is a mountpoint
    return user


def write_key_pair(path: Path, comment: str) -> str:
    """Write a fresh ed25519 key pair in OpenSSH format; return the public key line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # ssh refuses open keys
    with os.fdopen(fd, "wb") as out:
        out.write(private)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    line = public.decode()
    path.with_name(path.name + ".pub").write_text(f"{line} {comment}\n")
    return line


def fingerprint(public_line: str) -> str:
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# -- helpers: ports ----------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free right now, all below the kernel's ephemeral range.

    Not bind(0): that hands out ephemeral ports, which any outgoing connection may take later,
    and epmd binds its port only when the first BEAM starts; start_sshd re-binds too.
    """
    ceiling = ephemeral_low()
    held: list[socket.socket] = []
    try:
        for _ in range(100 * count):
            if len(held) == count:
                break
            port = _LOWEST_PORT + secrets.randbelow(ceiling - _LOWEST_PORT)
            sock = bound(port)  # fails for ports already held, so no duplicates
            if sock is not None:
                held.append(sock)
        if len(held) < count:
            raise FleetError(f"could not find {count} free ports")
        return [s.getsockname()[1] for s in held]
    finally:
        for sock in held:
            sock.close()


def ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, _LOWEST_PORT + 1000)


def bound(port: int) -> socket.socket | None:
    """A socket bound to `port` on every address (epmd listens on all), or None if taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("", port))
    except OSError:
        sock.close()
        return None
    return sock


def speaks_ssh(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            return sock.recv(8).startswith(b"SSH-2.0-")
    except OSError:
        return False


# -- helpers: processes ------------------------------------------------------------------------


def popen(argv: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
    )


def proc_table() -> list[Proc]:
    """Every live, non-zombie process: pid, parent, pid namespace, pid inside it."""
    table = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            proc = read_proc(int(entry.name))
            if proc is not None:
                table.append(proc)
    return table


def read_proc(pid: int) -> Proc | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        pid_ns = os.readlink(f"/proc/{pid}/ns/pid")  # fails for zombies: they are gone
    except OSError:
        return None
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return Proc(pid, int(fields["PPid"]), pid_ns, int(fields["NSpid"].split()[-1]))


def comm(pid: int) -> str:
    """A process's command name, or "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone is fine
        os.kill(pid, sig)
