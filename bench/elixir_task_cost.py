"""What Elixir task modules add to a deployment of one real node (a local sshd node, hello):
the wall time of `edeliver deploy` with no task, with one Elixir task before the start (one
`bin/hello eval` VM), three of them in the same stage (still one VM), and one after the start
(`bin/hello rpc` into the running VM); the versions alternate so every deploy does the same work.

    .venv/bin/python bench/elixir_task_cost.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edeliver.adapters.local_fleet import LocalFleet
from edeliver.cli.demo import prepare_project
from tests.support.faults_tasks import write_tasks
from tests.support.hello_release import put_in_local_store

VERSIONS = ("0.1.0", "0.2.0")


def module(name: str, stage: str) -> str:
    return (
        f"defmodule Bench.{name} do\n  use Edeliver.Task, stage: :{stage}\n"
        f"  def run(ctx), do: assign(ctx, :{name.lower()}, Hello.version())\nend\n"
    )


CASES = {
    "no task": {},
    "1 task, eval": {"a.ex": module("A", "post_extract_release_archive")},
    "3 tasks, one eval VM": {
        f"{n.lower()}.ex": module(n, "post_extract_release_archive") for n in ("A", "B", "C")
    },
    "1 task, rpc": {"a.ex": module("A", "post_start_deployed_release")},
}


def deploy(project: Path, version: str) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "edeliver.cli", "-C", str(project), "deploy", "staging",
         "--version", version],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fleet = LocalFleet(root / "fleet", 1, name_prefix="bench")
        fleet.start()
        try:
            project = prepare_project(root, fleet, "staging", "")
            put_in_local_store(project, [(v, "good") for v in VERSIONS])
            deploy(project, VERSIONS[0])  # the first deploy starts from nothing: not measured
            turn = 1
            medians = {}
            for case, files in CASES.items():
                write_tasks(project, files)
                times = []
                for _ in range(runs):
                    times.append(deploy(project, VERSIONS[turn % 2]))
                    turn += 1
                medians[case] = statistics.median(times)
                print(f"{case:24} median {medians[case]:6.2f}s  runs {times}", flush=True)
            base = medians["no task"]
            for case, seconds in medians.items():
                print(f"{case:24} adds {seconds - base:+6.2f}s per node")
        finally:
            fleet.stop()


if __name__ == "__main__":
    main()
