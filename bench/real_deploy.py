"""Real deploys of examples/hello 0.1.0 to N local sshd nodes, against a plain scp+ssh script.

Per N (each in a fresh subprocess, so peak RSS is that N's own): start a LocalFleet, time
`edeliver.core.rollout.deploy` (one_for_all + rollback) to every node, read the phases back from
the stored NodeTransitioned events, then stop the VMs, wipe the deploy dirs and time the baseline
(per node in the background: scp, then one ssh that unpacks, switches `current`, starts and polls
the same `bin/hello rpc` health check as the adapter every 0.5 s; then `wait`).

    .venv/bin/python bench/real_deploy.py [--sizes 1,5,10,20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edeliver.adapters.config_file import load_config
from edeliver.adapters.local_fleet import FleetNode, LocalFleet
from edeliver.adapters.mix_build import local_platform
from edeliver.adapters.node_scripts import RPC_HEALTH, ReleaseCommands
from edeliver.cli.composition import real_services, release_store
from edeliver.cli.demo import prepare_project
from edeliver.core.model import Artifact
from edeliver.core.rollout import deploy
from tests.support.hello_release import tarball

VERSION, ENV = "0.1.0", "bench"
POLICY = 'strategy = "one_for_all"\nfallback = "rollback"'
PHASES = dict(preparing="upload+sha", installing="unpack", activating="start", verifying="verify")
VM_COMMS = {"beam.smp", "erl_child_setup", "epmd", "run_erl", "inet_gethost", "heart"}
Span = tuple[datetime, datetime]


def run_ours(project: Path) -> tuple[float, dict[str, list[float]], str]:
    """Wall time of one real deploy, per phase [sum over nodes, wall] from its events, and why
    it failed ("" if it succeeded)."""
    config = load_config(project)
    release_store(project, config).put(
        tarball(VERSION), Artifact("hello", VERSION, "", 0, platform=local_platform())
    )
    services = real_services(project, config)
    started = time.perf_counter()
    deployment = asyncio.run(deploy(services, config, ENV, VERSION))
    wall = time.perf_counter() - started
    failed = "" if deployment.outcome == "succeeded" else first_reason(deployment.reasons)
    events = services.deployments.events_of(deployment.id)
    services.deployments.close()
    return wall, phase_times(events), failed


def first_reason(reasons: dict[str, str]) -> str:
    node, reason = next(iter(sorted(reasons.items())), ("?", "no reason recorded"))
    return f"{len(reasons)} node(s) failed, e.g. {node}: {reason.splitlines()[0]}"


def phase_times(events: Sequence[Any]) -> dict[str, list[float]]:
    by_node: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for event in events:
        if type(event).__name__ == "NodeTransitioned":
            by_node[event.node].append((event.timestamp, event.dest))
    spans: dict[str, list[Span]] = defaultdict(list)
    for steps in by_node.values():
        for (entered, state), (left, _) in pairwise(steps):
            spans[state].append((entered, left))
    return {
        state: [sum((b - a).total_seconds() for a, b in spans[state]), wall_of(spans[state])]
        for state in PHASES
    }


def wall_of(spans: list[Span]) -> float:
    return (max(b for _, b in spans) - min(a for a, _ in spans)).total_seconds() if spans else 0.0


def stop_and_wipe(fleet: LocalFleet) -> None:
    """Kill what the deploy started (VMs, run_erl, epmd) and remove everything it wrote."""
    for name in fleet.names:
        for pid in [p for p in fleet.processes(name) if comm(p) in VM_COMMS]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(comm(p) in VM_COMMS for n in fleet.names for p in fleet.processes(n)):
        if time.monotonic() > deadline:
            raise SystemExit("VMs still alive after SIGKILL")
        time.sleep(0.05)
    for node in fleet.nodes:
        for entry in ("releases", ".edeliver", "current", f"hello-{VERSION}.tar.gz"):
            target = node.root / entry
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.is_dir():
                shutil.rmtree(target)


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def baseline_script(fleet: LocalFleet, release: Path) -> str:
    """Per node in the background: scp, then one ssh doing unpack, switch, start and health."""
    health = ReleaseCommands().render(RPC_HEALTH, "hello")
    remote = (
        f"set -e\nP={shlex.quote(fleet.deploy_path)}; V={VERSION}\n"
        'mkdir -p "$P/releases/$V" && tar -xzf "$P/hello-$V.tar.gz" -C "$P/releases/$V"\n'
        'ln -sfn "releases/$V" "$P/current.new" && mv -fT "$P/current.new" "$P/current"\n'
        'cd "$P/current"; for e in erts-*/bin/epmd; do "$e" -daemon; done; bin/hello daemon\n'
        f'n=0; until [ "$({health} 2>/dev/null)" = "$V" ]; do\n'
        '  n=$((n + 1)); [ "$n" -le 120 ] || { echo "$(hostname) not healthy" >&2; exit 1; }; sleep 0.5\n'
        "done\n"
    )
    opts = (
        f"-i {shlex.quote(str(fleet.client_key))} -o UserKnownHostsFile={shlex.quote(str(fleet.known_hosts))} "
        "-o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR"
    )
    lines = ["pids=''"]
    for node in fleet.nodes:
        lines.append(f'( {one_node(node, opts, release, remote)} ) & pids="$pids $!"')
    lines.append('rc=0; for p in $pids; do wait "$p" || rc=1; done; exit "$rc"')
    return "\n".join(lines) + "\n"


def one_node(node: FleetNode, opts: str, release: Path, remote: str) -> str:
    target = f"{node.user}@{node.host}"
    scp = f"scp -q {opts} -P {node.port} {shlex.quote(str(release))} {target}:{node.path}/hello-{VERSION}.tar.gz"
    return f"{scp} && ssh {opts} -p {node.port} {target} {shlex.quote(remote)}"


def run_baseline(fleet: LocalFleet) -> float:
    script = baseline_script(fleet, tarball(VERSION))
    started = time.perf_counter()
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"baseline failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall


def one(n: int) -> dict[str, Any]:
    """Everything for one N, in this (fresh) process."""
    root = Path(tempfile.mkdtemp(prefix="edeliver-bench-real-"))
    fleet = LocalFleet(root / "fleet", n)
    try:
        fleet.start()
        load = os.getloadavg()[0]
        ours, phases, failed = run_ours(prepare_project(root, fleet, ENV, POLICY))
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        stop_and_wipe(fleet)
        base = run_baseline(fleet)
    finally:
        fleet.stop()
        shutil.rmtree(root, ignore_errors=True)
    return dict(n=n, ours=ours, base=base, rss_mb=rss_mb, phases=phases, load=load, failed=failed)


def report(rows: list[dict[str, Any]]) -> None:
    print(
        f"# {os.cpu_count()} cores; CPU-bound by BEAM starts (each daemon and each `rpc` health poll boots a VM)"
    )
    print(
        "# phases from NodeTransitioned timestamps: sum over nodes / wall (first enter to last leave), s"
    )
    print("# load: 1-min load average once the fleet was up (other jobs on this machine count too)")
    print(f"# tree: {tree()} (git describe of the code measured)")
    head = f"{'N':>3} {'ours s':>7} {'base s':>7} {'ratio':>6} {'RSS MB':>7} {'load':>5}"
    print(
        head + "".join(f" {label + ' sum/wall':>22}" for label in PHASES.values()) + "  ours ended"
    )
    for row in rows:
        line = f"{row['n']:>3} {row['ours']:>7.2f} {row['base']:>7.2f} {row['ours'] / row['base']:>6.2f} {row['rss_mb']:>7.1f} {row['load']:>5.1f}"
        phases = "".join(f" {s:>10.2f} / {w:>9.2f}" for s, w in (row["phases"][p] for p in PHASES))
        print(line + phases + "  " + ("FAILED: " + row["failed"] if row["failed"] else "succeeded"))


def tree() -> str:
    root = str(Path(__file__).resolve().parents[1])
    args = ["git", "-C", root, "describe", "--always", "--dirty"]
    return subprocess.run(args, capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,5,10,20")
    parser.add_argument("--one", type=int, help="internal: run one N, print its row as JSON")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    tarball(VERSION)  # build (or find cached) once, outside every timed child
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        child = subprocess.run(
            [sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=False
        )
        if child.returncode != 0:
            raise SystemExit(f"N={n} failed:\n{child.stdout[-2000:]}{child.stderr[-3000:]}")
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    report(rows)


if __name__ == "__main__":
    main()
