"""Hot upgrades of examples/hello 0.1.0 -> 0.2.0 (v2) against a full-release deploy of 0.2.0.

Prints: the time of `build upgrade` (appups + relup + package from the two stored releases,
median of 3), then per N local sshd nodes and per load: the wall time and the deployer's CPU
(this process and its children) of the hot upgrade rollout (mode = "upgrade") and of a
full-release deploy of the same version to the same nodes, with the machine's load. `with`
load: a client on every node calls the GenServer back to back (2 ms apart) from a separate
hidden BEAM node, and the row says the calls made, the calls failed and the longest time
without an answer; `without`: no clients. Each N and load gets a fresh fleet, on 0.1.0 by a
full deploy first (a full deploy back to 0.1.0 after 0.2.0 is not what is measured).
Under each row, per rollout: each state's median seconds per node (from the events) and the CPU
seconds the whole machine spent busy during it, nodes included (/proc/stat): on a machine that
runs nothing else, that CPU over the cores is the floor of the rollout's wall time.

    .venv/bin/python bench/hot_upgrade.py [--sizes 1,10,40] [--load with,without]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.build.upgrade_build import build_upgrade
from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.cli.composition import Runtime
from edeliver.cli.demo import prepare_project
from edeliver.core.domain.model import Artifact
from edeliver.core.usecases.rollout import deploy
from tests.support.hello_release import SOURCE_DIR, tarball

V1, V2 = "0.1.0", "0.2.0"
POLICY = 'mode = "upgrade"\nstrategy = "one_for_all"\nfallback = "rollback"\nstep_timeout = 300'
COOKIE = "hello-example-cookie-not-secret"  # examples/hello/mix.exs: fixed, not a secret
CLIENT = """
{:ok, host} = :inet.gethostname()
target = {Hello.Counter, :"hello@#{host}"}
stop = System.fetch_env!("BENCH_STOP")
now = fn -> System.monotonic_time(:millisecond) end
loop = fn loop, ok, failed, last_ok, gap ->
  if File.exists?(stop) do
    IO.puts("ok=#{ok} failed=#{failed} gap_ms=#{max(gap, now.() - last_ok)}")
  else
    answered = try do
      GenServer.call(target, :info, 5000)
      true
    catch
      _, _ -> false
    end
    t = now.()
    Process.sleep(if answered, do: 2, else: 10)
    if answered,
      do: loop.(loop, ok + 1, failed, t, max(gap, t - last_ok)),
      else: loop.(loop, ok, failed + 1, last_ok, gap)
  end
end
IO.puts("started")
loop.(loop, 0, 0, now.(), 0)
"""


def store_of(project: Path) -> LocalDirectoryStore:
    return LocalDirectoryStore(project / ".deliver" / "releases")


def put_releases(store: LocalDirectoryStore) -> None:
    for version, variant in ((V1, "good"), (V2, "v2")):
        asyncio.run(
            store.put(
                tarball(version, variant),
                Artifact("hello", version, "", 0, platform=local_platform()),
            )
        )


def time_build(store: LocalDirectoryStore, work: Path) -> tuple[float, Artifact]:
    old, new = (asyncio.run(store.artifact("hello", v)) for v in (V1, V2))
    times, built = [], None
    for _ in range(3):
        started = time.perf_counter()
        built = build_upgrade(old, new, work, SOURCE_DIR)
        times.append(time.perf_counter() - started)
    assert built is not None
    return statistics.median(times), asyncio.run(store.put(built.tarball, built.artifact))


class Clients:
    """One hidden BEAM node per target node, calling its GenServer until told to stop."""

    def __init__(self, fleet: LocalFleet) -> None:
        self.fleet = fleet
        self.running: list[subprocess.Popen[str]] = []

    def start(self) -> None:
        for node in self.fleet.nodes:
            (node.root / "shared").mkdir(exist_ok=True)
            (node.root / "shared" / "bench.stop").unlink(missing_ok=True)
            self.running.append(self._spawn(node))
        for client in self.running:
            assert client.stdout is not None
            said = ""
            while (line := client.stdout.readline()) and line.strip() != "started":
                said += line
            if not line:
                raise SystemExit(f"a client did not start: {said}")
        time.sleep(1.0)

    def stop(self) -> dict[str, int]:
        for node in self.fleet.nodes:
            (node.root / "shared" / "bench.stop").write_text("")
        totals = {"ok": 0, "failed": 0, "gap_ms": 0}
        for client in self.running:
            out, _ = client.communicate(timeout=120)
            fields = dict(f.split("=") for f in out.split() if "=" in f)
            totals["ok"] += int(fields.get("ok", 0))
            totals["failed"] += int(fields.get("failed", 0))
            totals["gap_ms"] = max(totals["gap_ms"], int(fields.get("gap_ms", 0)))
        self.running.clear()
        return totals

    def _spawn(self, node: FleetNode) -> subprocess.Popen[str]:
        stop = f"{node.path}/shared/bench.stop"
        # The node's VM runs with its environment's cookie (runtime settings), not mix.exs's.
        cookie = f"$(cat {shlex.quote(node.path + '/shared/.edeliver/cookie')} || echo {COOKIE})"
        remote = (
            f"BENCH_STOP={shlex.quote(stop)} elixir --sname bench_client_{os.getpid()} "
            f'--cookie "{cookie}" --erl -hidden -e {shlex.quote(CLIENT)}'
        )
        return subprocess.Popen(
            ["ssh", "-i", str(self.fleet.client_key), "-o",
             f"UserKnownHostsFile={self.fleet.known_hosts}", "-o", "StrictHostKeyChecking=yes",
             "-o", "BatchMode=yes", "-p", str(node.port), f"{node.user}@{node.host}", remote],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


NO_CALLS = {"ok": 0, "failed": 0, "gap_ms": 0}


def deployer_cpu() -> float:
    """CPU seconds of this process and its finished children (ssh, the store's tools)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def machine_cpu() -> float:
    """CPU seconds every core of the machine spent busy so far (/proc/stat: all but idle and
    iowait): the nodes' sshds, shells and VMs share this machine with the deployer."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def timed_rollout(project: Path, environment: str, version: str) -> dict[str, Any]:
    runtime = Runtime(project=project)
    config, services = runtime.config, runtime.services(None)
    cpu, busy, started = deployer_cpu(), machine_cpu(), time.perf_counter()
    deployment = asyncio.run(deploy(services, config, environment, version))
    wall, cpu = time.perf_counter() - started, deployer_cpu() - cpu
    busy = machine_cpu() - busy
    steps = step_medians(services.deployments.events_of(deployment.id))
    services.deployments.close()
    load = os.getloadavg()[0]
    return dict(wall=wall, cpu=cpu, busy=busy, outcome=deployment.outcome, load=load, steps=steps)


def step_medians(events: list[Any]) -> dict[str, float]:
    """Where a node's time goes, from the events' timestamps: the median over the nodes of the
    seconds from the deployment's first event to the node's first step ("before"), and of the
    seconds spent in each state a transition entered (preparing, installing, ...)."""
    start = events[0].timestamp
    per_state: dict[str, list[float]] = {}
    last: dict[str, tuple[str, Any]] = {}
    for event in events:
        node, dest = getattr(event, "node", None), getattr(event, "dest", None)
        if node is None or dest is None:
            continue
        state, since = last.get(node, ("before", start))
        per_state.setdefault(state, []).append((event.timestamp - since).total_seconds())
        last[node] = (dest, event.timestamp)
    return {state: statistics.median(times) for state, times in per_state.items()}


def loaded_rollout(fleet: LocalFleet, load: str, project: Path, environment: str) -> dict[str, Any]:
    """A rollout to V2, with clients calling every node during it when `load` is "with"."""
    if load == "without":
        return timed_rollout(project, environment, V2) | {"calls": NO_CALLS}
    clients = Clients(fleet)
    clients.start()
    try:
        rollout = timed_rollout(project, environment, V2)
    finally:
        calls = clients.stop()
    return rollout | {"calls": calls}


def one(n: int, root: Path, load: str) -> dict[str, Any]:
    """A fresh fleet on 0.1.0 (a full deploy), then the hot upgrade and the full deploy."""
    fleet = LocalFleet(root / f"fleet{n}", n)
    try:
        fleet.start()
        project = prepare_project(root / f"n{n}", fleet, "hot", POLICY)
        names = ", ".join(f'"{name}"' for name in fleet.names)
        with (project / ".deliver/edeliver.toml").open("a") as toml:
            toml.write(f"\n[environments.full]\nnodes = [{names}]\nstep_timeout = 300\n")
        store = store_of(project)
        put_releases(store)
        build_s, _ = time_build(store, project / ".deliver" / "build")
        first = timed_rollout(project, "full", V1)["outcome"]
        hot = loaded_rollout(fleet, load, project, "hot")
        full = loaded_rollout(fleet, load, project, "full")
    finally:
        fleet.stop()
    return dict(n=n, load=load, build=build_s, first=first, hot=hot, full=full)


def report(rows: list[dict[str, Any]]) -> None:
    print(
        f"# {os.cpu_count()} cores; load = 1-min load average after each rollout (others count too)"
    )
    print(
        "# build = `build upgrade` 0.1.0 -> 0.2.0 (unpack both releases, 1 eval VM for appups + relup, pack), median of 3"
    )
    print(
        "# load with: a hidden BEAM node per target calls Hello.Counter 2 ms apart during the rollout;"
        " cpu = the deployer's CPU seconds"
    )
    print(
        f"{'N':>3} {'load':>7} {'build s':>7} {'hot s':>6} {'cpu s':>5} {'calls':>6} {'failed':>6}"
        f" {'gap ms':>6} {'load':>5} {'full s':>6} {'cpu s':>5} {'calls':>6} {'failed':>6}"
        f" {'gap ms':>6} {'load':>5}  outcomes"
    )
    for r in rows:
        print(f"{r['n']:>3} {r['load']:>7} {r['build']:>7.2f} {_cells(r['hot'])} {_cells(r['full'])}"
              f"  first {r['first']}, hot {r['hot']['outcome']}, full {r['full']['outcome']}")  # fmt: skip
    print("# seconds per node in each state, median over the nodes (from the events' timestamps)")
    for r in rows:
        for kind in ("hot", "full"):
            steps = ", ".join(f"{s} {t:.2f}" for s, t in r[kind]["steps"].items())
            busy = r[kind]["busy"]
            share = busy / (r[kind]["wall"] * (os.cpu_count() or 1))
            print(f"# N={r['n']} {r['load']} load, {kind}: {steps}")
            print(f"#   the machine busy {busy:.1f} CPU s during it ({share:.0%} of its cores)")


def _cells(rollout: dict[str, Any]) -> str:
    c = rollout["calls"]
    return (
        f"{rollout['wall']:>6.2f} {rollout['cpu']:>5.2f} {c['ok'] + c['failed']:>6}"
        f" {c['failed']:>6} {c['gap_ms']:>6} {rollout['load']:>5.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,40")
    parser.add_argument("--load", default="with,without", help="with, without or both")
    args = parser.parse_args()
    sizes, loads = [int(s) for s in args.sizes.split(",")], args.load.split(",")
    if not set(loads) <= {"with", "without"}:
        parser.error("--load takes with, without or with,without")
    rows = []
    for n in sizes:
        for load in loads:
            root = Path(tempfile.mkdtemp(prefix="edeliver-bench-hot-"))
            try:
                rows.append(one(n, root, load))
            finally:
                shutil.rmtree(root, ignore_errors=True)
            report(rows[-1:])  # as it comes: a long run killed still said something
    print("# all rows", file=sys.stderr)
    report(rows)


if __name__ == "__main__":
    main()
