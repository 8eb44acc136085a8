"""SSH round trips of a full-release redeploy: the scripts each node is sent, and the wall time.

Starts a LocalFleet of N nodes, deploys examples/hello 0.1.0 once (untimed), then redeploys
0.2.0 and 0.1.0 in turn `--runs` times through the CLI with `-vv`, which prints every script
sent to a node. Printed per redeploy: the wall time and the scripts per node (median over the
nodes, then min and max); the uploads' SFTP/streaming channel is one of those scripts.

    .venv/bin/python bench/round_trips.py [--nodes 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from race import (
    ENV,
    POLICY,
    VERSIONS,
    Race,
    check_every_node_runs,
    compile_edeliver,
    hello_release,
    store_releases,
)

from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.cli.demo import prepare_project

SENDS = re.compile(r"^(\S+): sends a script:$", re.M)


def redeploy(project: Path, version: str) -> tuple[float, Counter[str]]:
    """The wall time of one `edeliver -vv deploy`, and the scripts it sent to each node."""
    cli = [sys.executable, "-m", "edeliver.cli", "-vv", "-C", str(project)]
    started = time.perf_counter()
    done = subprocess.run(
        [*cli, "deploy", ENV, "--version", version], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"deploy {version} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, Counter(SENDS.findall(done.stderr))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    release = hello_release()
    for version in VERSIONS:
        release.tarball(version)  # built (or found in the cache) before anything is timed
    compile_edeliver()
    root = Path(tempfile.mkdtemp(prefix="edeliver-trips-"))
    fleet = LocalFleet(root / "fleet", args.nodes)
    try:
        fleet.start()
        project = prepare_project(root, fleet, ENV, POLICY)
        store_releases(project, release)
        race = Race(root, fleet, project, release)
        _, first = redeploy(project, VERSIONS[0])
        print(f"first deploy: {statistics.median(first.values()):g} scripts per node")
        for run in range(args.runs):
            version = VERSIONS[(run + 1) % 2]
            wall, sent = redeploy(project, version)
            check_every_node_runs(race, version, "edeliver")
            per_node = sorted(sent[name] for name in fleet.names)
            print(
                f"redeploy {version}: {wall:6.2f} s wall, scripts per node: median "
                f"{statistics.median(per_node):g} (min {per_node[0]}, max {per_node[-1]})"
            )
    finally:
        fleet.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
