"""Build times of examples/ledger (an umbrella with a git and a path dependency) with a cold and
a warm deps cache, for each build strategy: local, a remote build host (a local sshd node) and a
podman container (the image of tests/support/build_image.py).

cold: no deps/ and no _build/ (locally: the project's own; remote: the host's per-app cache;
container: the project's .deliver/cache/container-build); warm: the previous build's, at another
version (LEDGER_VERSION), so each warm build also pays for the stale-.app removal; warm-same:
at the same version (local only), for comparison. The load average is printed before each
strategy: the builds share the machine's cores with whatever else runs.

    .venv/bin/python bench/ledger_builds.py [--runs 3] [--strategies local,remote,container]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edeliver.adapters.build.build_scripts import MixTarget
from edeliver.adapters.build.container_build import DEPS_CACHE, ContainerBuilder
from edeliver.adapters.build.mix_build import MixLocalBuilder
from edeliver.adapters.build.remote_build import CACHE_DIR, SshBuildHost
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.ssh import AsyncsshNodeShells
from edeliver.core.domain.config import NodeConfig
from tests.support.build_image import IMAGE, PODMAN_GLOBAL, RUN_OPTIONS, ensure_image
from tests.support.ledger_project import bare_tally, ledger_copy, ledger_env

TARGET = MixTarget("prod", "ledger")
BUILD_PATH = "/srv/builds"
IN_CONTAINER = "/deps/tally.git"


def timed(build: Callable[[], object]) -> float:
    started = time.monotonic()
    build()
    return time.monotonic() - started


def local(root: Path, tally: Path, runs: int) -> dict[str, list[float]]:
    project = ledger_copy(root / "local")
    times: dict[str, list[float]] = {"cold": [], "warm": [], "warm-same": []}

    def build(version: str) -> float:
        env = ledger_env(version, str(tally))
        return timed(MixLocalBuilder(project, "ledger", env=env, target=TARGET).build)

    for run in range(runs):
        for kept in ("deps", "_build"):
            shutil.rmtree(project / kept, ignore_errors=True)
        times["cold"].append(build(f"1.{run}.0"))
        times["warm"].append(build(f"1.{run}.1"))
        times["warm-same"].append(build(f"1.{run}.1"))
    return times


def remote(root: Path, runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    with LocalFleet(root / "fleet", 1, deploy_path=BUILD_PATH, name_prefix="bench") as fleet:
        node = fleet.nodes[0]
        bare = shutil.move(bare_tally(root), node.root / "tally.git")
        shutil.chown(bare, node.user)
        for path in Path(bare).rglob("*"):
            shutil.chown(path, node.user)
        project = ledger_copy(root / "remote")
        address = NodeConfig("build", node.host, BUILD_PATH, node.port, node.user, (),
                             str(fleet.client_key))  # fmt: skip
        shells = AsyncsshNodeShells(known_hosts=str(fleet.known_hosts))

        def build(version: str) -> float:
            env = ledger_env(version, f"{BUILD_PATH}/tally.git")
            host = SshBuildHost(project, "ledger", address, shells, env=env, target=TARGET)
            return timed(host.build)

        for run in range(runs):
            shutil.rmtree(node.root / CACHE_DIR, ignore_errors=True)
            times["cold"].append(build(f"1.{run}.0"))
            times["warm"].append(build(f"1.{run}.1"))
    return times


def container(root: Path, tally: Path, runs: int) -> dict[str, list[float]]:
    ensure_image()
    project = ledger_copy(root / "container")
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    options = [*RUN_OPTIONS, "-v", f"{tally}:{IN_CONTAINER}:ro"]

    def build(version: str) -> float:
        env = ledger_env(version, IN_CONTAINER)
        return timed(
            ContainerBuilder(
                project, "ledger", IMAGE, cli="podman", global_options=PODMAN_GLOBAL,
                run_options=options, env=env, target=TARGET,
            ).build
        )  # fmt: skip

    for run in range(runs):
        shutil.rmtree(project / DEPS_CACHE, ignore_errors=True)
        times["cold"].append(build(f"1.{run}.0"))
        times["warm"].append(build(f"1.{run}.1"))
    return times


def show(where: str, times: dict[str, list[float]], load: float) -> None:
    for kind, seconds in times.items():
        each = ", ".join(f"{s:.1f}" for s in seconds)
        print(f"| {where} | {kind} | {statistics.median(seconds):.1f} s | {each} | {load:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--strategies", default="local,remote,container")
    options = parser.parse_args()
    runs, chosen = options.runs, options.strategies.split(",")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        tally = bare_tally(root)
        strategies = {
            "local": lambda: local(root, tally, runs),
            "remote build host": lambda: remote(root / "r", runs),
            "container (podman)": lambda: container(root, tally, runs),
        }
        print("| strategy | deps cache | median | each run | load before |")
        print("| --- | --- | --- | --- | --- |")
        for where, measure in strategies.items():
            if where.split()[0] in chosen:
                load = os.getloadavg()[0]
                show(where, measure(), load)


if __name__ == "__main__":
    main()
