"""Day-2 operations on N real nodes: how long each command takes, and how long a batched
restart leaves each node down.

Starts a LocalFleet of N nodes, deploys examples/hello 0.1.0 (health: hello's status file),
then times `ping`, `rpc`, `eval`, `logs`, `restart` one node at a time (max_parallel = 1) and
all at once, through the command line as a user runs it. While each restart runs, a thread
asks every node for its VM's status file over OpenSSH, and the longest run of polls that found
a node down is printed as that node's downtime (an upper bound: one poll round apart).

    .venv/bin/python bench/operations.py [--nodes 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.node_scripts import STATUS_FILE_HEALTH
from edeliver.cli.demo import prepare_project
from tests.e2e.conftest import EDELIVER
from tests.support.hello_release import put_in_local_store
from tests.support.nodes import ssh


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=3)
    size = parser.parse_args().nodes
    with tempfile.TemporaryDirectory(prefix="edeliver-ops-bench-") as root:
        fleet = LocalFleet(Path(root) / "fleet", size)
        fleet.start()
        try:
            project = prepare_project(Path(root), fleet, "waves", "max_parallel = 1")
            with (project / ".deliver/edeliver.toml").open("a") as toml:
                names = ", ".join(f'"{n}"' for n in fleet.names)
                toml.write(f"\n[environments.all]\nnodes = [{names}]\n")
                toml.write(f"\n[commands]\nhealth = {json.dumps(STATUS_FILE_HEALTH)}\n")
            put_in_local_store(project, [("0.1.0", "good")])
            timed(project, "deploy", "all", "--version", "0.1.0")
            for args in (("ping", "all"), ("rpc", "all", "IO.puts(node())"),
                         ("eval", "all", "IO.puts(1)"), ("logs", "all", "--lines", "20")):  # fmt: skip
                timed(project, *args)
            for environment in ("waves", "all"):
                downtime = probed(fleet, lambda e=environment: timed(project, "restart", e))
                print(f"  down per node (s): {downtime}")
        finally:
            fleet.stop()


def timed(project: Path, *args: str) -> None:
    start = time.monotonic()
    done = subprocess.run([*EDELIVER, "-C", str(project), *args], capture_output=True, check=False)
    print(f"edeliver {' '.join(args)}: {time.monotonic() - start:.2f} s (exit {done.returncode})")


def probed(fleet: LocalFleet, action: object) -> dict[str, float]:
    """Run `action` while polling every node; each node's longest time seen down."""
    down: dict[str, float] = dict.fromkeys(fleet.names, 0.0)
    since: dict[str, float | None] = dict.fromkeys(fleet.names)
    stop = threading.Event()

    def poll(name: str) -> None:
        node = fleet.node(name)
        check = f"cd {node.path}/current && {STATUS_FILE_HEALTH.replace('{app}', 'hello')}"
        while not stop.is_set():
            up, now = ssh(fleet, node, check).returncode == 0, time.monotonic()
            started = since[name]
            if not up and started is None:
                since[name] = now
            elif up and started is not None:
                down[name], since[name] = max(down[name], now - started), None

    pollers = [threading.Thread(target=poll, args=(n,)) for n in fleet.names]
    for poller in pollers:
        poller.start()
    try:
        action()  # type: ignore[operator]
    finally:
        stop.set()
        for poller in pollers:
            poller.join()
    return {name: round(seconds, 2) for name, seconds in down.items()}


if __name__ == "__main__":
    main()
