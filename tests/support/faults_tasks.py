"""For the task fault tests: a hello project on real sshd nodes, and the questions every fault
test asks afterwards (what runs, where `current` points and whether it names a complete release,
whether the deployment's events load and its environment's lock is free), asked with OpenSSH and
the CLI, independent of the code under test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.cli.demo import prepare_project
from tests.support.hello_release import put_in_local_store
from tests.support.nodes import running_versions, ssh
from tests.support.waiting import process_ended, wait_for

EDELIVER = [sys.executable, "-m", "edeliver.cli"]
GOOD, NEXT = "0.1.0", "0.2.0"


@dataclass
class Ran:
    """An edeliver command that ended, and how long it took to."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass
class FaultProject:
    directory: Path
    fleet: LocalFleet

    def edeliver(self, *args: str, env: dict[str, str] | None = None, limit: float = 300) -> Ran:
        """Run the CLI; it must exit by itself within `limit` seconds (else TimeoutExpired)."""
        began = time.monotonic()
        done = subprocess.run(
            [*EDELIVER, "-C", str(self.directory), *args],
            capture_output=True, text=True, timeout=limit, check=False,
            env={**_without_events_url(), **(env or {})},
        )  # fmt: skip
        return Ran(done.returncode, done.stdout, done.stderr, time.monotonic() - began)

    def tasks(self, files: dict[str, str]) -> None:
        write_tasks(self.directory, files)

    def all_on(self, version: str) -> None:
        """Every node on `version`, running, with no task in the way."""
        self.tasks({})
        if set(running_versions(self.fleet).values()) != {version}:
            done = self.edeliver("deploy", "base", "--version", version, "--json")
            assert done.returncode == 0, done.stdout + done.stderr
        self.assert_nodes_on({n: version for n in self.fleet.names})

    def assert_nodes_on(self, versions: dict[str, str]) -> None:
        """Each node runs its version, from a `current` naming that complete release."""
        assert running_versions(self.fleet) == versions
        for name, version in versions.items():
            node = self.fleet.node(name)
            said = ssh(self.fleet, node, _CURRENT.format(path=node.path)).stdout.split()
            assert said == [f"releases/{version}", "complete"], (name, said)

    def last_deployment(self, environment: str) -> dict[str, Any]:
        """The environment's newest row of `edeliver history`."""
        done = self.edeliver("history", environment, "--json")
        assert done.returncode == 0, done.stderr
        rows: list[dict[str, Any]] = json.loads(done.stdout)["deployments"]
        return rows[-1]

    def assert_ended_and_readable(self, environment: str, outcome: str) -> list[dict[str, Any]]:
        """The last deployment ended as said (so its lock is free) and its events load; they
        are returned."""
        row = self.last_deployment(environment)
        assert (row["outcome"], bool(row["ended_at"])) == (outcome, True), row
        log = self.edeliver("log", row["id"], "--json")
        assert log.returncode == 0, log.stderr
        return [json.loads(line) for line in log.stdout.splitlines()]


# `current`'s target, and whether it holds a whole release (its boot script, libs, release data).
_CURRENT = (
    "cd {path} && readlink current && "
    "if [ -x current/bin/hello ] && [ -d current/lib ] && [ -f current/releases/start_erl.data ]; "
    "then echo complete; else echo incomplete; fi"
)


def write_tasks(project: Path, files: dict[str, str]) -> None:
    """Make `files` (path below it: text) the project's whole `.deliver/tasks/`."""
    root = project / ".deliver/tasks"
    shutil.rmtree(root, ignore_errors=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def _without_events_url() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "EDELIVER_EVENTS"}


@contextmanager
def fault_project(root: Path, nodes: int, environments: str) -> Iterator[FaultProject]:
    """`nodes` real nodes, hello GOOD and NEXT in a local store, environment `base` (all nodes,
    step_timeout 60) plus `environments` (TOML tables whose `NODES` is the node list)."""
    fleet = LocalFleet(root / "fleet", nodes)
    fleet.start()
    try:
        directory = prepare_project(root, fleet, "base", "step_timeout = 60")
        names = ", ".join(f'"{n}"' for n in fleet.names)
        with (directory / ".deliver/edeliver.toml").open("a") as config:
            config.write("\n" + environments.replace("NODES", f"[{names}]"))
        put_in_local_store(directory, [(GOOD, "good"), (NEXT, "good")])
        yield FaultProject(directory, fleet)
    finally:
        fleet.stop()


def gone(pid: int, within: float = 15.0) -> bool:
    """Whether the process ends (or has ended) within `within` seconds."""
    try:
        wait_for(lambda: process_ended(pid), within, f"pid {pid} to end")
    except AssertionError:
        return False
    return True
