"""The programs a node runs for one rollout: every `execve` under one node's sshd, counted.

Starts a one-node LocalFleet, puts examples/hello 0.1.0 on it by a full deploy, then traces the
node's sshd (`strace -f -e trace=execve`, so every process its sessions start) during a
full-release redeploy of a new version (0.2.0) and, after a full deploy back to 0.1.0, during
the hot upgrade to 0.2.0. Printed per rollout: the programs run, by name, and their total; each one costs the
node about a millisecond of CPU (a fork and an exec), so on a machine running many nodes the
total is the part of the nodes' CPU a deployer decides. Needs `strace`.

    .venv/bin/python bench/node_processes.py
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hot_upgrade as hu

from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.cli.demo import prepare_project

# `<pid> execve("/usr/bin/tar", ["tar", ...` as strace -f prints a successful exec
_EXEC = re.compile(r'^\d+\s+execve\("([^"]+)".*\) = 0$')


def listener_pid(port: int) -> int:
    said = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
    )
    found = re.search(r"pid=(\d+)", said.stdout)
    if not found:
        raise SystemExit(f"no sshd listens on port {port}")
    return int(found[1])


def traced(pid: int, rollout: Callable[[], object]) -> collections.Counter[str]:
    """The programs run under `pid` while `rollout()` runs."""
    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        strace = subprocess.Popen(
            ["strace", "-f", "-qq", "-e", "trace=execve", "-o", out.name, "-p", str(pid)],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # attached
        try:
            rollout()
            time.sleep(0.5)  # the session's last processes end
        finally:
            strace.terminate()
            strace.wait()
        lines = Path(out.name).read_text().splitlines()
    return collections.Counter(
        os.path.basename(m[1]) for line in lines if (m := _EXEC.match(line.strip()))
    )


def report(name: str, programs: collections.Counter[str]) -> None:
    listed = ", ".join(f"{program} {count}" for program, count in programs.most_common())
    print(f"{name}: {sum(programs.values())} programs on the node: {listed}")


def main() -> None:
    if not shutil.which("strace"):
        raise SystemExit("needs strace (apt-get install strace)")
    root = Path(tempfile.mkdtemp(prefix="edeliver-bench-procs-"))
    fleet = LocalFleet(root / "fleet", 1)
    try:
        fleet.start()
        project = prepare_project(root / "p", fleet, "hot", hu.POLICY)
        with (project / ".deliver/edeliver.toml").open("a") as toml:
            toml.write(f'\n[environments.full]\nnodes = ["{fleet.names[0]}"]\nstep_timeout = 300\n')
        store = hu.store_of(project)
        hu.put_releases(store)
        hu.time_build(store, project / ".deliver" / "build")
        hu.timed_rollout(project, "full", hu.V1)
        sshd = listener_pid(fleet.nodes[0].port)
        full = traced(sshd, lambda: hu.timed_rollout(project, "full", hu.V2))
        hu.timed_rollout(project, "full", hu.V1)  # back, by its kept release
        hot = traced(sshd, lambda: hu.timed_rollout(project, "hot", hu.V2))
        report("full redeploy, a new version (0.1.0 -> 0.2.0)", full)
        report("hot upgrade (0.1.0 -> 0.2.0)", hot)
    finally:
        fleet.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
