"""Build times of examples/ledger (an umbrella with a git and a path dependency) with a cold and
a warm deps cache, locally and on a remote build host (a local sshd node).

cold: no deps/ and no _build/ (locally: the project's own; remote: the host's per-app cache);
warm: the previous build's, at another version (LEDGER_VERSION), so each warm build also pays
for the stale-.app removal; warm-same: at the same version (local only), for comparison.

    .venv/bin/python bench/build_deps_cache.py [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edeliver.adapters.build_scripts import MixTarget
from edeliver.adapters.local_fleet import LocalFleet
from edeliver.adapters.mix_build import MixLocalBuilder
from edeliver.adapters.remote_build import CACHE_DIR, SshBuildHost
from edeliver.adapters.ssh import AsyncsshNodeShells
from edeliver.core.config import NodeConfig
from tests.support.ledger_project import bare_tally, ledger_copy, ledger_env

TARGET = MixTarget("prod", "ledger")
BUILD_PATH = "/srv/builds"


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


def show(where: str, times: dict[str, list[float]]) -> None:
    for kind, seconds in times.items():
        each = ", ".join(f"{s:.1f}" for s in seconds)
        print(f"| {where} | {kind} | {statistics.median(seconds):.1f} s | {each} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        tally = bare_tally(root)
        print("| where | deps cache | median | each run |\n| --- | --- | --- | --- |")
        show("local", local(root, tally, runs))
        show("remote build host", remote(root / "r", runs))


if __name__ == "__main__":
    main()
