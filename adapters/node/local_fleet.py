"""A local test fleet: real OpenSSH ``sshd`` "nodes" on 127.0.0.1 that look like separate hosts.

Used by the integration fixtures and by ``edeliver demo``. Needs root (users, namespaces).

Each node is one ``unshare --pid --mount --fork`` namespace whose pid 1 is a generated shell
script (``init.sh``) that

* bind-mounts the node's private deploy dir onto the shared deploy path (``/srv/hello``) and a
  private home onto the node user's home, so every node shows the same paths but its own files,
  while nothing is mounted in the host's namespace;
* starts ``sshd`` (its own port, host key and user; ``SetEnv ERL_EPMD_PORT`` so releases with
  the same node name on different nodes register in different epmds);
* then reaps orphans forever like a real init: daemonised BEAMs and epmd are re-parented to it
  (this machine's own pid 1 reaps nothing, so without it they would linger as zombies).

When that pid 1 exits the kernel kills every process of the node and nothing else, which is how
``stop()`` tears a node down. A node's processes are found by their pid namespace.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import NamedTuple, Self

from edeliver.adapters.node.local_host import (
    HOST,
    FleetError,
    comm,
    ensure_user,
    fingerprint,
    free_ports,
    kill,
    popen,
    proc_table,
    speaks_ssh,
    write_key_pair,
)

# cryptography comes with asyncssh; it writes OpenSSH keys without running ssh-keygen.
from edeliver.adapters.node.ssh_host_keys import known_hosts_pattern

SSHD = "/usr/sbin/sshd"
USER_PREFIX = "edfleet-"
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 2.0
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


class _Files(NamedTuple):
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
    def at(cls, base: Path) -> _Files:
        return cls(
            base, base / "deploy", base / "home", base / "ssh_host_ed25519_key",
            base / "sshd_config", base / "init.sh", base / "sshd.pid", base / "node.log",
        )  # fmt: skip


@dataclass
class _Running:
    """The live namespace of one node: the `unshare` we started and its child, pid 1."""

    unshare: subprocess.Popen[bytes]
    init_pid: int | None = None
    pid_ns: str | None = None


class LocalFleet:
    """`size` sshd nodes named `<name_prefix>1..N`, all serving `deploy_path`."""

    def __init__(
        self, root: Path, size: int, *, deploy_path: str = "/srv/hello", name_prefix: str = "node"
    ) -> None:
        if size < 1:
            raise ValueError("a fleet needs at least one node")
        self.root = Path(root).absolute()
        self.size = size
        self.deploy_path = _checked_deploy_path(deploy_path)
        self.names = [_checked_name(f"{name_prefix}{i}") for i in range(1, size + 1)]
        self.client_key = self.root / "client_key"
        self.known_hosts = self.root / "known_hosts"
        self._nodes: dict[str, FleetNode] = {}
        self._running: dict[str, _Running] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> list[FleetNode]:
        """Create users, keys and configs, start every node, return once all accept SSH."""
        if self._running:
            raise FleetError("fleet already started")
        _require_root()
        try:
            self._prepare()
            for name in self.names:
                self._spawn(name)
            self._wait_ready(self.names)
            self._resolve_inits()
        except BaseException:
            self.stop()
            raise
        return self.nodes

    def stop(self) -> None:
        """Kill every process of every node (kernel-enforced through the pid namespaces)."""
        self._resolve_inits()
        for running in self._running.values():
            # pid 1 exits on TERM (init.sh traps it); the kernel then kills the rest.
            if running.init_pid is not None:
                kill(running.init_pid, signal.SIGTERM)
            else:  # not forked yet: --kill-child takes the child down with unshare
                running.unshare.kill()
        deadline = time.monotonic() + STOP_TIMEOUT
        for running in self._running.values():
            _reap(running, deadline)
        self._running.clear()

    def __enter__(self) -> Self:
        if not self._running:
            self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- per node ----------------------------------------------------------------------------

    @property
    def nodes(self) -> list[FleetNode]:
        return [self._nodes[name] for name in self.names]

    def node(self, name: str) -> FleetNode:
        try:
            return self._nodes[name]
        except KeyError:
            raise FleetError(f"no node {name!r} in this fleet") from None

    def kill_sshd(self, name: str) -> None:
        """Stop the node's sshd listener only: open sessions and started releases live on."""
        pid = self._listener_pid(name)
        if pid is not None:
            kill(pid, signal.SIGTERM)
            self._wait_closed(name)

    def start_sshd(self, name: str) -> None:
        """Start the node's sshd again, inside the node's namespaces, same port and host key."""
        if self._listener_pid(name) is not None:
            return
        enter = self.entering(name)
        # nsenter forks into the pid namespace; sshd daemonises, so its pid 1 adopts it.
        subprocess.run([*enter, *self._sshd_argv(name)], check=True, stdin=subprocess.DEVNULL)
        self._wait_ready([name])

    def rotate_host_key(self, name: str) -> FleetNode:
        """Give the node a new host key (known_hosts is left stale on purpose)."""
        files = self._files(name)
        public = write_key_pair(files.host_key, f"{name} host key")
        self._nodes[name] = replace(
            self.node(name), host_public_key=public, host_key_fingerprint=fingerprint(public)
        )
        self.kill_sshd(name)
        self.start_sshd(name)
        return self._nodes[name]

    def processes(self, name: str) -> list[int]:
        """Host pids of every live process of the node (its pid namespace)."""
        running = self._running.get(name)
        if running is None or running.pid_ns is None:
            return []
        return [p.pid for p in proc_table() if p.pid_ns == running.pid_ns]

    def entering(self, name: str) -> list[str]:
        """The argv prefix that runs a command inside the node's mount and pid namespaces (as
        root), e.g. to mount a small filesystem under its deploy path."""
        return ["nsenter", f"--target={self._init_pid(name)}", "--mount", "--pid", "--"]

    # -- client side -------------------------------------------------------------------------

    def write_known_hosts(self, path: Path | None = None) -> Path:
        """Write every node's current host key; `start()` does this for `self.known_hosts`."""
        target = path or self.known_hosts
        target.write_text("".join(f"{n.known_hosts_line}\n" for n in self.nodes))
        return target

    def toml_nodes(self) -> str:
        """An edeliver.toml fragment: one `[nodes.<name>]` table per node."""
        return "\n".join(self.toml_node(node) for node in self.nodes)

    def toml_node(self, node: FleetNode) -> str:
        # JSON strings are valid TOML basic strings.
        return (
            f"[nodes.{node.name}]\n"
            f"host = {json.dumps(node.host)}\n"
            f"port = {node.port}\n"
            f"user = {json.dumps(node.user)}\n"
            f"path = {json.dumps(node.path)}\n"
            f"identity_file = {json.dumps(str(self.client_key))}\n"
        )

    # -- setup -------------------------------------------------------------------------------

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        Path(self.deploy_path).mkdir(parents=True, exist_ok=True)  # the empty host mountpoint
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        client_public = write_key_pair(self.client_key, "edeliver local fleet client")
        ports = free_ports(2 * self.size)
        for i, name in enumerate(self.names):
            self._nodes[name] = self._prepare_node(name, ports[2 * i], ports[2 * i + 1])
            self._write_node_files(self._nodes[name], client_public)
        self.write_known_hosts()

    def _prepare_node(self, name: str, port: int, epmd_port: int) -> FleetNode:
        files = self._files(name)
        files.base.mkdir(parents=True, exist_ok=True)
        user = ensure_user(USER_PREFIX + name)
        public = write_key_pair(files.host_key, f"{name} host key")
        return FleetNode(
            name=name, host=HOST, port=port, user=user.pw_name, path=self.deploy_path,
            root=files.deploy, home=files.home, epmd_port=epmd_port,
            host_public_key=public, host_key_fingerprint=fingerprint(public),
        )  # fmt: skip

    def _write_node_files(self, node: FleetNode, client_public: str) -> None:
        files = self._files(node.name)
        user = pwd.getpwnam(node.user)
        ssh_dir = files.home / ".ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(client_public + "\n")
        files.deploy.mkdir(exist_ok=True)
        for path in (files.deploy, files.home, ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(path, user.pw_uid, user.pw_gid)
        files.config.write_text(_sshd_config(node, files))
        files.init.write_text(self._init_script(node, user.pw_dir))

    def _init_script(self, node: FleetNode, user_home: str) -> str:
        files, q = self._files(node.name), shlex.quote
        return (
            "#!/bin/sh\n"
            f"# pid 1 of fleet node {node.name}: private mounts, sshd, then reap like init.\n"
            "trap 'exit 0' TERM\n"
            "set -e\n"
            f"mount --bind {q(str(files.deploy))} {q(node.path)}\n"
            f"mount --bind {q(str(files.home))} {q(user_home)}\n"
            f"{shlex.join(self._sshd_argv(node.name))}\n"
            "set +e\n"
            "# wait reaps any child, so adopted orphans (BEAM daemons, epmd) leave no zombies.\n"
            "while :; do sleep 2147483647 & wait $!; done\n"
        )

    def _sshd_argv(self, name: str) -> list[str]:
        files = self._files(name)
        # Not -D: sshd daemonises, so pid 1 of the node adopts and reaps it.
        return [SSHD, "-f", str(files.config), "-E", str(files.log)]

    def _files(self, name: str) -> _Files:
        return _Files.at(self.root / "nodes" / name)

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self, name: str) -> None:
        files = self._files(name)
        argv = ["unshare", "--pid", "--mount", "--fork", "--kill-child", "--mount-proc",
                "--propagation", "private", "/bin/sh", str(files.init)]  # fmt: skip
        with files.log.open("ab") as log:
            # A new session: a Ctrl-C in `edeliver demo` reaches Python, which stops the fleet.
            self._running[name] = _Running(popen(argv, log))

    def _wait_ready(self, names: list[str]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        pending = list(names)
        while pending:
            for name in list(pending):
                if speaks_ssh(self._nodes[name].port):
                    pending.remove(name)
                elif (code := self._running[name].unshare.poll()) is not None:
                    tail = self._log_tail(name)
                    raise FleetError(f"node {name} exited ({code}) while starting:\n{tail}")
            if pending and time.monotonic() > deadline:
                raise FleetError(f"nodes not accepting SSH after {READY_TIMEOUT} s: {pending}")
            if pending:
                time.sleep(0.01)

    def _wait_closed(self, name: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while speaks_ssh(self._nodes[name].port):
            if time.monotonic() > deadline:
                raise FleetError(f"sshd of {name} still accepts connections")
            time.sleep(0.01)

    def _resolve_inits(self) -> None:
        """Find each namespace's pid 1 (the child of its `unshare`): one /proc scan for all."""
        missing = {r.unshare.pid: r for r in self._running.values() if r.init_pid is None}
        if not missing:
            return
        for proc in proc_table():
            running = missing.get(proc.ppid)
            if running is not None and proc.ns_pid == 1:
                running.init_pid, running.pid_ns = proc.pid, proc.pid_ns

    def _init_pid(self, name: str) -> int:
        running = self._running.get(name)
        if running is None or running.init_pid is None or running.unshare.poll() is not None:
            raise FleetError(f"node {name} is not running")
        return running.init_pid

    def _listener_pid(self, name: str) -> int | None:
        """Host pid of the node's sshd listener: its pid file holds a namespace pid."""
        init_pid = self._init_pid(name)
        try:
            ns_pid = int(self._files(name).pid_file.read_text())
        except (OSError, ValueError):
            return None
        # The daemonised listener is a child of pid 1; a stale pid file matches nothing.
        for proc in proc_table():
            if proc.ppid == init_pid and proc.ns_pid == ns_pid and comm(proc.pid) == "sshd":
                return proc.pid
        return None

    def _log_tail(self, name: str) -> str:
        lines = self._files(name).log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-20:])


# -- helpers: checks ---------------------------------------------------------------------------


def _require_root() -> None:
    if os.geteuid() != 0:
        raise FleetError("the local fleet needs root: it creates users and namespaces")
    if not Path(SSHD).exists():
        raise FleetError(f"{SSHD} not found: install openssh-server")


def _checked_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"bad node name {name!r}: lower-case letters, digits, '-', '_'")
    return name


def _checked_deploy_path(path: str) -> str:
    pure = PurePosixPath(path)
    if not pure.is_absolute() or len(pure.parts) < 2 or str(pure) != path:
        raise ValueError(f"deploy path must be a normalised absolute path below /: {path!r}")
    return path


# -- helpers: files, users, keys ---------------------------------------------------------------


LOOPBACK_ONLY_ERLANG = {
    "ERL_EPMD_ADDRESS": "127.0.0.1",
    "ERL_AFLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
}
_LOOPBACK_SETENV = " ".join(f'{name}="{value}"' for name, value in LOOPBACK_ONLY_ERLANG.items())


def _sshd_config(node: FleetNode, files: _Files) -> str:
    def quoted(path: Path) -> str:
        if '"' in str(path) or "\n" in str(path):
            raise FleetError(f"path not usable in sshd_config: {path}")
        return f'"{path}"'

    return (
        f"# edeliver local fleet node {node.name} (generated)\n"
        f"Port {node.port}\nListenAddress {HOST}\n"
        f"HostKey {quoted(files.host_key)}\nPidFile {quoted(files.pid_file)}\n"
        # Relative to the home, which is the node's private (fleet-owned) home dir.
        "AuthorizedKeysFile .ssh/authorized_keys\n"
        f"AllowUsers {node.user}\n"
        # PAM would reject the '*' password of the fleet users; StrictModes the tmp dirs.
        "UsePAM no\nStrictModes no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n"
        "PrintMotd no\nPrintLastLog no\nX11Forwarding no\n"
        "Subsystem sftp internal-sftp\n"
        # One epmd per node, so one BEAM node name can run on every node at once.
        # Test hosts share this machine's network: epmd and Erlang distribution listen on
        # loopback only, never on the machine's other addresses. sshd takes the first SetEnv
        # line only, so every variable goes on it.
        f"SetEnv ERL_EPMD_PORT={node.epmd_port} {_LOOPBACK_SETENV}\n"
        # MaxSessions / MaxStartups stay at sshd's defaults: the product must respect them.
    )


def _reap(running: _Running, deadline: float) -> None:
    """Wait for the node's `unshare`, which exits only when the whole namespace is gone."""
    try:
        running.unshare.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        # pid 1 ignored TERM (signalled before its trap was set): SIGKILL cannot be ignored.
        if running.init_pid is not None:
            kill(running.init_pid)
        running.unshare.kill()
        running.unshare.wait()
