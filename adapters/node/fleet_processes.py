"""Starting and stopping a local fleet node's processes: the `unshare` whose child is the node's
pid 1 (init.sh), and the sshd inside it; finding them again by their pid namespace.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from edeliver.adapters.node.fleet_inventory import NodeFiles
from edeliver.adapters.node.local_host import (
    FleetError,
    comm,
    kill,
    popen,
    proc_table,
    speaks_ssh,
)

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 2.0


@dataclass
class NodeNamespace:
    """The live namespace of one node: the `unshare` we started and its child, pid 1."""

    unshare: subprocess.Popen[bytes]
    log: Path
    init_pid: int | None = None
    pid_ns: str | None = None

    @classmethod
    def spawn(cls, files: NodeFiles) -> NodeNamespace:
        argv = ["unshare", "--pid", "--mount", "--fork", "--kill-child", "--mount-proc",
                "--propagation", "private", "/bin/sh", str(files.init)]  # fmt: skip
        with files.log.open("ab") as log:
            # A new session: a Ctrl-C in `edeliver demo` reaches Python, which stops the fleet.
            return cls(popen(argv, log), files.log)

    def running_init(self, name: str) -> int:
        """The host pid of the node's pid 1, which must still be running."""
        if self.init_pid is None or self.unshare.poll() is not None:
            raise FleetError(f"node {name} is not running")
        return self.init_pid

    def members(self) -> list[int]:
        """Host pids of every live process of the namespace."""
        if self.pid_ns is None:
            return []
        return [p.pid for p in proc_table() if p.pid_ns == self.pid_ns]

    def listener_pid(self, name: str, pid_file: Path) -> int | None:
        """Host pid of the node's sshd listener: its pid file holds a namespace pid."""
        init_pid = self.running_init(name)
        try:
            ns_pid = int(pid_file.read_text())
        except (OSError, ValueError):
            return None
        # The daemonised listener is a child of pid 1; a stale pid file matches nothing.
        for proc in proc_table():
            if proc.ppid == init_pid and proc.ns_pid == ns_pid and comm(proc.pid) == "sshd":
                return proc.pid
        return None

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    def terminate(self) -> None:
        # pid 1 exits on TERM (init.sh traps it); the kernel then kills the rest.
        if self.init_pid is not None:
            kill(self.init_pid, signal.SIGTERM)
        else:  # not forked yet: --kill-child takes the child down with unshare
            self.unshare.kill()

    def reap(self, deadline: float) -> None:
        """Wait for the `unshare`, which exits only when the whole namespace is gone."""
        try:
            self.unshare.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            # pid 1 ignored TERM (signalled before its trap was set): SIGKILL cannot be ignored.
            if self.init_pid is not None:
                kill(self.init_pid)
            self.unshare.kill()
            self.unshare.wait()


def resolve_inits(namespaces: Iterable[NodeNamespace]) -> None:
    """Find each namespace's pid 1 (the child of its `unshare`): one /proc scan for all."""
    missing = {ns.unshare.pid: ns for ns in namespaces if ns.init_pid is None}
    if not missing:
        return
    for proc in proc_table():
        namespace = missing.get(proc.ppid)
        if namespace is not None and proc.ns_pid == 1:
            namespace.init_pid, namespace.pid_ns = proc.pid, proc.pid_ns


def stop_all(namespaces: list[NodeNamespace]) -> None:
    """Kill every process of every namespace (kernel-enforced: pid 1 goes, all go)."""
    resolve_inits(namespaces)
    for namespace in namespaces:
        namespace.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for namespace in namespaces:
        namespace.reap(deadline)


def wait_ready(starting: Mapping[str, tuple[int, NodeNamespace]]) -> None:
    """Return once every node's port speaks SSH; fail naming a node that exited meanwhile, or
    the nodes left once none became ready for READY_TIMEOUT seconds. The wait counts from the
    last node that became ready, not from the start: 200 sshds starting on a loaded 2-core
    machine take longer than 10 s in all while every one is ready within seconds of its turn."""
    deadline = time.monotonic() + READY_TIMEOUT
    pending = dict(starting)
    while pending:
        for name, (port, namespace) in list(pending.items()):
            if speaks_ssh(port):
                del pending[name]
                deadline = time.monotonic() + READY_TIMEOUT
            elif (code := namespace.unshare.poll()) is not None:
                tail = namespace.log_tail()
                raise FleetError(f"node {name} exited ({code}) while starting:\n{tail}")
        if pending and time.monotonic() > deadline:
            raise FleetError(
                f"nodes not accepting SSH, none ready for {READY_TIMEOUT} s: {list(pending)}"
            )
        if pending:
            time.sleep(0.01)


def wait_closed(name: str, port: int) -> None:
    """Return once nothing accepts SSH on the node's port any more."""
    deadline = time.monotonic() + READY_TIMEOUT
    while speaks_ssh(port):
        if time.monotonic() > deadline:
            raise FleetError(f"sshd of {name} still accepts connections")
        time.sleep(0.01)
