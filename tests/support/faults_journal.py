"""For the event store fault tests: a hello project on real nodes, deployers as processes, a
SQLite file held by another process or on a disk that fills, and the checks every fault test
ends with (what the nodes run, the log, the lock)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.cli.demo import prepare_project
from edeliver.core.domain.model import Artifact
from tests.support.hello_release import tarball
from tests.support.nodes import running_versions, ssh
from tests.support.waiting import wait_for

EDELIVER = [sys.executable, "-m", "edeliver.cli"]
GOOD, NEXT, BROKEN = "0.1.0", "0.2.0", "0.3.0"
ENVIRONMENTS = """
[environments.waves]
nodes = [{nodes}]
max_parallel = 1
"""


@dataclass
class Deployer:
    """An `edeliver` process of the test's own, its stderr read line by line as it comes."""

    process: subprocess.Popen[str]
    said: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.said.append(line.rstrip("\n"))

    def wait_until_it_says(self, text: str, timeout: float = 120) -> None:
        poll(lambda: any(text in line for line in self.said), timeout, f"stderr saying {text!r}")

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        """Its exit code, stdout and stderr once it ended (killed if it outlives `timeout`)."""
        try:
            self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:  # never leave our deployer running on
                self.process.kill()
                self.process.wait()
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        self._reader.join(timeout=30)
        return self.process.returncode, out, "\n".join(self.said)


@dataclass
class Project:
    """The hello project on a fleet, with the event store chosen by `events` (a URL or "")."""

    directory: Path
    fleet: LocalFleet
    events: str = ""
    patience: str = ""
    deployers: list[Deployer] = field(default_factory=list)
    known: set[str] = field(default_factory=set)  # deployments there before the last `start`

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDELIVER_EVENTS")}
        if self.events:
            env["EDELIVER_EVENTS"] = self.events
        if self.patience:
            env["EDELIVER_EVENTS_PATIENCE"] = self.patience
        return env

    def edeliver(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*EDELIVER, "-C", str(self.directory), *args],
            capture_output=True, text=True, timeout=timeout, check=False, env=self.env(),
        )  # fmt: skip

    def start(self, *args: str) -> Deployer:
        history = json.loads(self.edeliver("history", "--json").stdout)
        self.known = {row["id"] for row in history["deployments"]}
        process = subprocess.Popen(
            [*EDELIVER, "-C", str(self.directory), *args],
            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env(),
        )  # fmt: skip
        self.deployers.append(Deployer(process))
        return self.deployers[-1]

    def stop_deployers(self) -> None:
        """Kill the deployers this project started that still run (a test that failed)."""
        for deployer in self.deployers:
            if deployer.process.poll() is None:
                deployer.process.kill()
                deployer.process.wait()
        self.deployers.clear()

    def log(self, deployment: str | None = None) -> list[dict[str, Any]]:
        """The events of a deployment (the latest by default); asserts that they load."""
        result = self.edeliver("log", *([deployment] if deployment else []), "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    def wait_for_any(self, state: str, timeout: float = 180) -> str:
        """Wait until a node of the latest deployment entered `state`; return the deployment."""
        return self.wait_for(None, state, timeout)

    def wait_for(self, node: str | None, state: str, timeout: float = 180) -> str:
        """Wait until `node` of the deployment the last `start` began entered `state`; return
        that deployment's id. Fails at once if that deployer ended before."""
        found: list[str] = []

        def reached() -> bool:
            deployer = self.deployers[-1]
            if deployer.process.poll() is not None:
                raise AssertionError(f"the deployer ended first: {deployer.said}")
            for deployment, moved, dest in self.transitions():
                if deployment not in self.known and dest == state and node in (None, moved):
                    found.append(deployment)
                    return True
            return False

        poll(reached, timeout, f"{node or 'a node'} entering {state}")
        return found[0]

    def transitions(self) -> list[tuple[str, str, str]]:
        """(deployment, node, state entered) of every stored NodeTransitioned, oldest first:
        read from the SQLite file itself (quick enough to catch a short rollback), else `log`."""
        if self.events.startswith("sqlite://"):
            db = self.events.removeprefix("sqlite://")
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
                    rows = connection.execute(
                        "SELECT originator_id, state FROM stored_events "
                        "WHERE topic LIKE '%Deployment.NodeTransitioned' ORDER BY rowid"
                    ).fetchall()
            except sqlite3.OperationalError:
                return []  # the deployer has not made the file (or its table) yet, or holds it
            moved = [(str(uuid.UUID(str(i))), json.loads(state)) for i, state in rows]
            return [(i, e["node"], e["dest"]) for i, e in moved]
        result = self.edeliver("log", "--json")
        events = [json.loads(line) for line in result.stdout.splitlines()]
        return [
            (e["deployment"], e["node"], e["dest"])
            for e in events
            if e["event"] == "NodeTransitioned"
        ]

    def ensure_all_on(self, version: str) -> None:
        if set(running_versions(self.fleet).values()) != {version}:
            result = self.edeliver("deploy", "all", "--version", version)
            assert result.returncode == 0, result.stdout + result.stderr
        assert set(running_versions(self.fleet).values()) == {version}

    def assert_whole(self, version: str, deployment: str) -> None:
        """What every fault test ends with: each node runs `version`, its `current` names that
        complete release, the deployment's events load and it ended, so the lock is free."""
        assert running_versions(self.fleet) == dict.fromkeys(self.fleet.names, version)
        for node in self.fleet.nodes:
            current = node.root / "current"
            assert current.resolve() == (node.root / "releases" / version).resolve(), node.name
            assert (current / "bin" / "hello").is_file(), node.name
            assert (current / "releases" / version / "start.boot").is_file(), node.name
            assert ssh(self.fleet, node, f"test -x {node.path}/current/bin/hello").returncode == 0
        assert self.log(deployment)[0]["deployment"].startswith(deployment)
        history = json.loads(self.edeliver("history", "--json").stdout)["deployments"]
        ended = [row for row in history if row["id"].startswith(deployment)]
        assert ended and ended[0]["outcome"] is not None, history
        assert all(row["outcome"] is not None for row in history), history  # nothing locked


def poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    wait_for(condition, timeout, what, every=0.2)


def one_line(stderr: str) -> str:
    """The deployer's last word: one line (retry notices may come before it)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and "Traceback" not in stderr and "never retrieved" not in stderr, stderr
    return lines[-1]


def start_project(root: Path, size: int = 3) -> tuple[Project, LocalFleet]:
    """`size` real nodes and examples/hello 0.1.0, 0.2.0 and a non-booting 0.3.0 in the store;
    environments `all` (one batch, one_for_all + rollback) and `waves` (one node at a time)."""
    fleet = LocalFleet(root / "fleet", size)
    fleet.start()
    directory = prepare_project(root, fleet, "all", "max_parallel = 5")
    names = ", ".join(f'"{n}"' for n in fleet.names)
    with (directory / ".deliver/edeliver.toml").open("a") as config:
        config.write(ENVIRONMENTS.format(nodes=names))
    store = LocalDirectoryStore(directory / ".deliver/releases")
    for version, variant in ((GOOD, "good"), (NEXT, "good"), (BROKEN, "broken")):
        built = Artifact("hello", version, "", 0, platform=local_platform())
        asyncio.run(store.put(tarball(version, variant), built))
    return Project(directory, fleet), fleet


# ---- faults of the store ------------------------------------------------------------------

_HOLD = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline() if sys.argv[2] == "until-told" else time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


@contextmanager
def sqlite_held(db: Path, seconds: float | None) -> Iterator[subprocess.Popen[str]]:
    """Another process holds `db` with BEGIN EXCLUSIVE, for `seconds` or until the block ends."""
    hold = "until-told" if seconds is None else str(seconds)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(db), hold],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        if holder.poll() is None and seconds is None:
            assert holder.stdin is not None
            holder.stdin.write("release\n")
            holder.stdin.flush()
        try:
            holder.wait(timeout=(seconds or 0) + 30)
        finally:
            if holder.poll() is None:
                holder.kill()


@contextmanager
def small_tmpfs(directory: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of its own, unmounted afterwards."""
    directory.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                   check=True)  # fmt: skip
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system of `directory` to the last byte; returns the filler to delete."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (65536, 4096, 1):  # unbuffered: nothing is left to flush on close
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler
