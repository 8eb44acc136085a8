"""A hello project on 4 real sshd nodes for the VM and rollback fault tests, and the questions
asked of the nodes afterwards (over OpenSSH, independent of the code under test).

node1-node3 serve `all`; node4's deploy path is a small tmpfs of its own, so that a test can fill
it. The release commands are the defaults, except that a node whose `shared/one-node-name`
names the version being run uses one epmd shared by every node: as when several nodes are given
one node name, their VMs then clash, and a health check can reach another node's VM.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.local_host import free_ports
from edeliver.adapters.node.node_scripts import MIX_START, RPC_HEALTH
from edeliver.cli.demo import prepare_project
from tests.e2e.conftest import Project
from tests.support import waiting
from tests.support.hello_release import put_in_local_store
from tests.support.nodes import running_version, ssh

OLD, NEW = "0.1.0", "0.2.0"
DISK_MB = 160  # node4's deploy path: room for two releases and their uploads, not much more

ENVIRONMENTS = """
[environments.two]
nodes = ["node1", "node2"]
strategy = "one_for_all"
fallback = "rollback"
step_timeout = 60

[environments.quick]
nodes = ["node1", "node2"]
strategy = "one_for_all"
fallback = "rollback"
step_timeout = 20

[environments.rebooting]
nodes = ["node3"]
fallback = "rollback"
step_timeout = 90

[environments.small_disk]
nodes = ["node4"]
fallback = "rollback"
step_timeout = 60
"""


def one_name_commands(epmd_port: int) -> str:
    """`[commands]` using one shared epmd for the version named in shared/one-node-name."""
    shared = (
        'if [ "$(cat ../../shared/one-node-name 2>/dev/null)" = "$(basename "$(pwd -P)")" ]; '
        f"then export ERL_EPMD_PORT={epmd_port}; fi; "
    )
    commands = {"start": MIX_START, "stop": "bin/{app} stop", "health": RPC_HEALTH}
    lines = [f"{key} = {json.dumps(shared + value)}" for key, value in commands.items()]
    return "\n[commands]\n" + "\n".join(lines) + "\n"


class FaultProject(Project):
    """The e2e Project, with what the fault tests ask of the nodes."""

    def deployed(self, environment: str, version: str) -> tuple[int, dict[str, Any]]:
        """The exit code and the JSON summary of a deployment."""
        done = self.deploy(environment, version)
        return done.returncode, summary(done.stdout, done.stderr)

    def on(self, name: str) -> FleetNode:
        return self.fleet.node(name)

    def sh(self, name: str, command: str) -> str:
        done = ssh(self.fleet, self.on(name), command, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def tasks(self, files: dict[str, str]) -> None:
        root = self.directory / ".deliver/tasks"
        for old in root.glob("*") if root.is_dir() else ():
            old.unlink()
        root.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (root / name).write_text(text)

    def put_on(self, name: str, file: str, text: str) -> None:
        """Write `shared/<file>` on the node as its user (node4's tmpfs is not the host dir)."""
        path = f"{self.on(name).path}/shared/{file}"
        self.sh(name, f"mkdir -p {self.on(name).path}/shared && printf %s {text!r} > {path}")

    def ensure_on(self, environment: str, version: str, names: list[str]) -> None:
        """Put the nodes on `version`, running, whatever an earlier test left."""
        if any(running_version(self.fleet, self.on(n)) != version for n in names):
            code, report = self.deployed(environment, version)
            assert code == 0, report
        assert all(running_version(self.fleet, self.on(n)) == version for n in names)

    # -- what the nodes say afterwards -----------------------------------------------------------

    def release_vms(self, name: str) -> list[tuple[int, str]]:
        """(pid, -boot) of the node's BEAMs that boot a release's `start` (not consoles)."""
        boots = ((pid, boot_of(argv)) for pid, argv in self.beams(name))
        return [(pid, boot) for pid, boot in boots if boot.endswith("/start")]

    def beams(self, name: str) -> list[tuple[int, list[str]]]:
        """Every BEAM on the node, with its arguments."""
        listing = self.sh(
            name,
            'for f in /proc/[0-9]*; do case "$(cat $f/comm 2>/dev/null)" in beam*) '
            "printf '%s\\037' ${f#/proc/}; tr '\\000' '\\037' < $f/cmdline; echo;; esac; done",
        )
        beams = []
        for line in listing.splitlines():
            pid, *argv = line.split("\x1f")
            beams.append((int(pid), argv))
        return beams

    def assert_settled(self, deployment: str, expected: dict[str, str]) -> None:
        """Every node runs exactly one complete release, the expected one, `current` names it;
        the deployment's events load and it has ended (the environment's lock is free)."""
        for name, version in expected.items():
            path = self.on(name).path
            assert self.sh(name, f"readlink {path}/current").strip() == f"releases/{version}"
            self.sh(name, f"test -x {path}/current/bin/hello && test -d {path}/current/releases/"
                    f"{version} && test -d {path}/current/lib")  # fmt: skip
            assert [b.split("/")[-2] for _, b in self.release_vms(name)] == [version], name
            assert running_version(self.fleet, self.on(name)) == version, name
        log = self.edeliver("log", deployment, "--json")
        assert log.returncode == 0, log.stderr
        assert [json.loads(line) for line in log.stdout.splitlines()]
        history = self.edeliver("history", "--json")
        assert history.returncode == 0, history.stderr
        row = next(r for r in json.loads(history.stdout)["deployments"] if r["id"] == deployment)
        assert row["outcome"] and row["ended_at"], row


def boot_of(argv: list[str]) -> str:
    return next((v for flag, v in itertools.pairwise(argv) if flag == "-boot"), "")


def summary(stdout: str, stderr: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    assert lines, stderr
    return dict(json.loads(lines[-1]))


def node_states(report: dict[str, Any]) -> dict[str, str]:
    return {name: node["state"] for name, node in report["nodes"].items()}


def reboot(fleet: LocalFleet, name: str) -> None:
    """Kill every process of the node but its init (sshd, VMs, scripts), as a crash would."""
    for pid in fleet.processes(name):
        if _namespace_pid(pid) != 1:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _namespace_pid(pid: int) -> int | None:
    with suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return None


def mount_small_disk(fleet: LocalFleet, name: str) -> None:
    """A tmpfs of DISK_MB over the node's deploy path, inside the node's mount namespace."""
    node = fleet.node(name)
    init = next(p for p in fleet.processes(name) if _namespace_pid(p) == 1)
    stat = node.root.stat()
    options = f"size={DISK_MB}m,uid={stat.st_uid},gid={stat.st_gid},mode=0755"
    subprocess.run(
        ["nsenter", f"--target={init}", "--mount", "--", "mount", "-t", "tmpfs", "-o", options,
         "edeliver-faults", node.path],
        check=True,
    )  # fmt: skip


def points_at(link: Path, version: str) -> bool:
    """Whether the `current` link names `version`'s release (false while it is being switched)."""
    try:
        return str(link.readlink()) == f"releases/{version}"
    except OSError:
        return False


def wait_for(what: str, check: Any, timeout: float = 120, every: float = 0.1) -> Any:
    """Poll `check()` until it returns something true; fail naming `what` at the deadline."""
    return waiting.wait_for(check, timeout, what, every)


def fault_project(root: Path) -> Iterator[FaultProject]:
    """4 nodes (node4 with a small disk), hello 0.1.0 and 0.2.0 in a local store."""
    fleet = LocalFleet(root / "fleet", 4)
    fleet.start()
    try:
        mount_small_disk(fleet, "node4")
        names = '"node1", "node2", "node3"'
        directory = prepare_project(root, fleet, "all", f"max_parallel = 3\nnodes = [{names}]")
        config = (directory / ".deliver/edeliver.toml").read_text()
        config = config.replace('nodes = ["node1", "node2", "node3", "node4"]\n', "", 1)
        config += ENVIRONMENTS + one_name_commands(free_ports(1)[0])
        (directory / ".deliver/edeliver.toml").write_text(config)
        put_in_local_store(directory, [(OLD, "good"), (NEW, "good")])
        yield FaultProject(directory, fleet)
    finally:
        fleet.stop()
