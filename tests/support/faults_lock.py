"""The lab of the node-lock fault tests: 3 real sshd nodes, the hello project, two environments
sharing a node, a node task that sleeps on request and a stop command that dawdles on request."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.cli.demo import prepare_project
from edeliver.core.domain.model import Artifact
from tests.support.hello_release import tarball
from tests.support.nodes import running_versions
from tests.support.waiting import wait_for

EDELIVER = [sys.executable, "-m", "edeliver.cli"]
GOOD, NEXT = "0.1.0", "0.2.0"
# blue and green share node2; all is every node.
ENVIRONMENTS = """
[environments.blue]
nodes = ["node1", "node2"]

[environments.green]
nodes = ["node2", "node3"]
"""
# Stop dawdles while shared/slow_stop names seconds: a slow switch (it runs from the VM's root).
COMMANDS = """
[commands]
stop = 'if [ -f ../../shared/slow_stop ]; then echo "stopping slowly"; sleep "$(cat ../../shared/slow_stop)"; fi; bin/{app} stop'
"""  # noqa: E501
# Sleeps while shared/slow names seconds: a live deployer busy with a long step.
SLOW_TASK = """#!/bin/sh
# stage: pre_start_deployed_release
if [ -f shared/slow ]; then
  touch shared/slow.running
  sleep "$(cat shared/slow)"
fi
"""


@dataclass
class LockLab:
    """The project, its fleet, and what the tests ask the nodes, independent of the code."""

    directory: Path
    fleet: LocalFleet

    @classmethod
    def create(cls, root: Path) -> LockLab:
        fleet = LocalFleet(root / "fleet", 3)
        fleet.start()
        directory = prepare_project(root, fleet, "all", "max_parallel = 3")
        with (directory / ".deliver/edeliver.toml").open("a") as config:
            config.write(ENVIRONMENTS + COMMANDS)
        tasks = directory / ".deliver/tasks"
        tasks.mkdir(parents=True, exist_ok=True)
        (tasks / "10_slow.sh").write_text(SLOW_TASK)
        store = LocalDirectoryStore(directory / ".deliver/releases")
        for version in (GOOD, NEXT):
            asyncio.run(
                store.put(
                    tarball(version, "good"),
                    Artifact("hello", version, "", 0, platform=local_platform()),
                )
            )
        return cls(directory, fleet)

    # -- the command line --------------------------------------------------------------------

    def edeliver(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*EDELIVER, "-C", str(self.directory), *args],
            capture_output=True, text=True, timeout=timeout, check=False, env=_env(),
        )  # fmt: skip

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*EDELIVER, "-C", str(self.directory), *args],
            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
        )  # fmt: skip

    def history(self) -> list[dict[str, Any]]:
        result = self.edeliver("history", "--json")
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout)["deployments"])

    def events(self, deployment: str) -> list[str]:
        """The deployment's event names, as `edeliver log` loads them."""
        result = self.edeliver("log", deployment, "--json")
        assert result.returncode == 0, result.stderr
        return [json.loads(line)["event"] for line in result.stdout.splitlines()]

    def ensure_all_on(self, version: str) -> None:
        """Every node running `version`, with no request to be slow left over."""
        for node in self.fleet.names:
            for flag in ("slow", "slow.running", "slow_stop"):
                (self.shared(node) / flag).unlink(missing_ok=True)
        if set(self.running().values()) != {version}:
            result = self.edeliver("deploy", "all", "--version", version)
            assert result.returncode == 0, result.stdout + result.stderr
        assert set(self.running().values()) == {version}

    # -- the nodes ---------------------------------------------------------------------------

    def root(self, node: str) -> Path:
        return self.fleet.node(node).root

    def shared(self, node: str) -> Path:
        shared = self.root(node) / "shared"
        shared.mkdir(exist_ok=True)
        os.chown(shared, *_owner(self.root(node)))
        return shared

    def flag(self, node: str, name: str, text: str) -> None:
        """Write shared/<name> on the node, owned by the node's user (its tasks remove it)."""
        path = self.shared(node) / name
        path.write_text(text)
        os.chown(path, *_owner(self.root(node)))

    def slow_task_running(self, node: str) -> bool:
        return (self.shared(node) / "slow.running").exists()

    def running(self) -> dict[str, str | None]:
        return running_versions(self.fleet)

    def current(self, node: str) -> str | None:
        link = self.root(node) / "current"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def complete(self, node: str, version: str) -> bool:
        release = self.root(node) / "releases" / version
        return (release / "bin/hello").is_file() and (release / "releases" / version).is_dir()

    def lock_free(self, node: str) -> bool:
        """Nobody `flock`s the node's lock file (asked from here, on the very same file)."""
        lock = self.root(node) / ".edeliver/lock"
        if not lock.exists():
            return True
        return subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode == 0

    def start_log(self, node: str) -> str:
        log = self.root(node) / ".edeliver/start.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def assert_settled(self, expected: dict[str, str]) -> None:
        """Each node runs exactly the expected release, current names it and it is complete,
        and every node's lock is free."""
        assert self.running() == expected
        for node, version in expected.items():
            assert self.current(node) == version and self.complete(node, version), node
        wait_for(lambda: all(self.lock_free(n) for n in self.fleet.names), 30, "locks freed")


def _owner(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_uid, stat.st_gid


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "EDELIVER_EVENTS"}
