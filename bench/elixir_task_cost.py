"""What Elixir task modules add to a deployment of one real node (a local sshd node, hello).

Per case, the time from the stage's first `TaskStarted` to its last `TaskRan` in the events
(what the tasks cost the node, over its SSH connection), and the deploy's wall time: a shell
task `true` (the floor: one script on the node), one Elixir task before the start (one
`bin/hello eval` VM), three in the same stage (still one VM), one after the start (`bin/hello
rpc` into the running VM). The versions alternate, so every deploy does the same work.

    .venv/bin/python bench/elixir_task_cost.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edeliver.adapters.node.local_fleet import LocalFleet
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
    "shell task `true`": {"a.sh": "# stage: post_extract_release_archive\ntrue\n"},
    "1 task, eval": {"a.ex": module("A", "post_extract_release_archive")},
    "3 tasks, one eval VM": {
        f"{n.lower()}.ex": module(n, "post_extract_release_archive") for n in ("A", "B", "C")
    },
    "1 task, rpc": {"a.ex": module("A", "post_start_deployed_release")},
}


def edeliver(project: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "edeliver.cli", "-C", str(project), *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    return done.stdout


def deploy(project: Path, version: str) -> tuple[float, float]:
    """(the tasks' span in the events, the deploy's wall time), in seconds."""
    started = time.monotonic()
    deployment = json.loads(edeliver(project, "deploy", "staging", "--version", version, "--json"))
    wall = time.monotonic() - started
    events = [
        json.loads(line)
        for line in edeliver(project, "log", deployment["id"], "--json").splitlines()
    ]
    at = [
        datetime.fromisoformat(e["at"]) for e in events if e["event"] in ("TaskStarted", "TaskRan")
    ]
    return (max(at) - min(at)).total_seconds() if at else 0.0, wall


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
            for case, files in CASES.items():
                write_tasks(project, files)
                spans, walls = [], []
                for _ in range(runs):
                    span, wall = deploy(project, VERSIONS[turn % 2])
                    spans.append(span)
                    walls.append(wall)
                    turn += 1
                print(
                    f"{case:28} tasks {statistics.median(spans):5.2f}s (min {min(spans):5.2f}s)"
                    f"  deploy {statistics.median(walls):5.2f}s  (medians of {runs})",
                    flush=True,
                )
        finally:
            fleet.stop()


if __name__ == "__main__":
    main()
