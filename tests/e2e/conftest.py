"""A 5-node fleet of real sshd nodes and a hello project targeting it, shared by a module."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.cli.demo import prepare_project
from edeliver.core.domain.config import FALLBACKS, STRATEGIES
from edeliver.core.domain.model import Artifact
from tests.support.hello_release import tarball
from tests.support.nodes import running_versions

EDELIVER = [sys.executable, "-m", "edeliver.cli"]
GOOD, NEXT, BROKEN = "0.1.0", "0.2.0", "0.3.0"


def environments(names: list[str]) -> str:
    """`all` (one batch), `waves` (one node at a time) and one per strategy × fallback."""
    nodes = ", ".join(f'"{n}"' for n in names)
    tables = [f"[environments.waves]\nnodes = [{nodes}]\nmax_parallel = 1\n"]
    for strategy in STRATEGIES:
        for fallback in FALLBACKS:
            tables.append(
                f"[environments.{strategy}-{fallback}]\nnodes = [{nodes}]\nmax_parallel = 2\n"
                f'strategy = "{strategy}"\nfallback = "{fallback}"\nstep_timeout = 60\n'
            )
    return "\n".join(tables)


@dataclass
class Project:
    """The hello project, its fleet, and the edeliver command line run against it."""

    directory: Path
    fleet: LocalFleet

    def edeliver(
        self, *args: str, timeout: float = 300, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*EDELIVER, "-C", str(self.directory), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**_env(), **(env or {})},
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*EDELIVER, "-C", str(self.directory), *args],
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )

    def deploy(self, environment: str, version: str) -> subprocess.CompletedProcess[str]:
        return self.edeliver("deploy", environment, "--version", version, "--json")

    def events(self, deployment: str | None = None) -> list[dict[str, Any]]:
        result = self.edeliver("log", *([deployment] if deployment else []), "--json")
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    def running(self) -> dict[str, str | None]:
        return running_versions(self.fleet)

    def ensure_all_on(self, version: str) -> None:
        """Put every node on `version`, running, whatever an earlier test left."""
        for node in self.fleet.nodes:
            (node.root / "shared" / "hello.refuse").unlink(missing_ok=True)
        if set(self.running().values()) != {version}:
            result = self.deploy("all", version)
            assert result.returncode == 0, result.stdout + result.stderr
        assert set(self.running().values()) == {version}

    def refuse_on(self, node: str, version: str) -> None:
        """Make `node` refuse to boot `version` (examples/hello reads shared/hello.refuse)."""
        root = self.fleet.node(node).root
        shared = root / "shared"
        shared.mkdir(exist_ok=True)
        (shared / "hello.refuse").write_text(version)
        for path in (shared, shared / "hello.refuse"):
            os.chown(path, *_owner(root))


def _owner(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_uid, stat.st_gid


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "EDELIVER_EVENTS"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """5 real nodes, examples/hello 0.1.0, 0.2.0 and a non-booting 0.3.0 in the store."""
    root = tmp_path_factory.mktemp("e2e")
    fleet = LocalFleet(root / "fleet", 5)
    fleet.start()
    try:
        directory = prepare_project(root, fleet, "all", "max_parallel = 5")
        with (directory / ".deliver/edeliver.toml").open("a") as config:
            config.write("\n" + environments(fleet.names))
        store = LocalDirectoryStore(directory / ".deliver/releases")
        for version, variant in ((GOOD, "good"), (NEXT, "good"), (BROKEN, "broken")):
            built = Artifact("hello", version, "", 0, platform=local_platform())
            asyncio.run(store.put(tarball(version, variant), built))
        yield Project(directory, fleet)
    finally:
        fleet.stop()
