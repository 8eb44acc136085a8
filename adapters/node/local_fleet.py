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

This module is the fleet as its users drive it; what a node is started from is in `fleet_sshd`,
its processes in `fleet_processes`, its inventory entry and files in `fleet_inventory`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

from edeliver.adapters.node.fleet_inventory import (
    FleetNode,
    NodeFiles,
    checked_deploy_path,
    checked_name,
)
from edeliver.adapters.node.fleet_processes import (
    NodeNamespace,
    resolve_inits,
    stop_all,
    wait_closed,
    wait_ready,
)
from edeliver.adapters.node.fleet_sshd import (
    SSHD,
    new_host_key,
    prepare_node,
    sshd_argv,
    write_node_files,
)
from edeliver.adapters.node.local_host import FleetError, free_ports, kill, write_key_pair


class LocalFleet:
    """`size` sshd nodes named `<name_prefix>1..N`, all serving `deploy_path`."""

    def __init__(
        self, root: Path, size: int, *, deploy_path: str = "/srv/hello", name_prefix: str = "node"
    ) -> None:
        if size < 1:
            raise ValueError("a fleet needs at least one node")
        self.root = Path(root).absolute()
        self.size = size
        self.deploy_path = checked_deploy_path(deploy_path)
        self.names = [checked_name(f"{name_prefix}{i}") for i in range(1, size + 1)]
        self.client_key = self.root / "client_key"
        self.known_hosts = self.root / "known_hosts"
        self._nodes: dict[str, FleetNode] = {}
        self._running: dict[str, NodeNamespace] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> list[FleetNode]:
        """Create users, keys and configs, start every node, return once all accept SSH."""
        if self._running:
            raise FleetError("fleet already started")
        _require_root()
        try:
            self._prepare()
            for name in self.names:
                self._running[name] = NodeNamespace.spawn(self._files(name))
            self._wait_ready(self.names)
            resolve_inits(self._running.values())
        except BaseException:
            self.stop()
            raise
        return self.nodes

    def stop(self) -> None:
        """Kill every process of every node (kernel-enforced through the pid namespaces)."""
        stop_all(list(self._running.values()))
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
            wait_closed(name, self._nodes[name].port)

    def start_sshd(self, name: str) -> None:
        """Start the node's sshd again, inside the node's namespaces, same port and host key."""
        if self._listener_pid(name) is not None:
            return
        enter = self.entering(name)
        # nsenter forks into the pid namespace; sshd daemonises, so its pid 1 adopts it.
        argv = [*enter, *sshd_argv(self._files(name))]
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
        self._wait_ready([name])

    def rotate_host_key(self, name: str) -> FleetNode:
        """Give the node a new host key (known_hosts is left stale on purpose)."""
        self._nodes[name] = new_host_key(self.node(name), self._files(name))
        self.kill_sshd(name)
        self.start_sshd(name)
        return self._nodes[name]

    def processes(self, name: str) -> list[int]:
        """Host pids of every live process of the node (its pid namespace)."""
        running = self._running.get(name)
        return running.members() if running is not None else []

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
            files = self._files(name)
            node = prepare_node(name, files, self.deploy_path, ports[2 * i], ports[2 * i + 1])
            write_node_files(node, files, client_public)
            self._nodes[name] = node
        self.write_known_hosts()

    def _files(self, name: str) -> NodeFiles:
        return NodeFiles.at(self.root / "nodes" / name)

    # -- processes ---------------------------------------------------------------------------

    def _wait_ready(self, names: list[str]) -> None:
        wait_ready({name: (self._nodes[name].port, self._running[name]) for name in names})

    def _namespace(self, name: str) -> NodeNamespace:
        running = self._running.get(name)
        if running is None:
            raise FleetError(f"node {name} is not running")
        return running

    def _init_pid(self, name: str) -> int:
        return self._namespace(name).running_init(name)

    def _listener_pid(self, name: str) -> int | None:
        return self._namespace(name).listener_pid(name, self._files(name).pid_file)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise FleetError("the local fleet needs root: it creates users and namespaces")
    if not Path(SSHD).exists():
        raise FleetError(f"{SSHD} not found: install openssh-server")
