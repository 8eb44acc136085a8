"""The race: Edeliver, a plain parallel script and Ansible redeploy one release to N real nodes.

Per N: one LocalFleet of N sshd nodes, examples/hello 0.1.0 deployed once to warm up (untimed).
Then, `--runs` times, each method in turn redeploys the version that does not run yet (0.1.0 and
0.2.0 alternate), removed from every node first (untimed), so every timed run is a redeploy of a
version the nodes do not hold: upload, unpack, switch `current`, stop the old VM, start the new
one, check it. All three leave the same layout (`releases/<v>`, `current`),
so each starts from what the one before left. After each run every node is asked (`bin/hello
rpc`) which version it runs; a method that left a node on the wrong one stops the race.

- edeliver: `edeliver deploy race --version V` (the CLI as users run it; one_for_all + rollback,
  default commands), the project's events in SQLite.
- script: per node in the background, `scp` the tarball, then one `ssh` that unpacks, switches,
  stops the old VM by SIGTERM (BEAM's graceful stop) and waits for it, starts the new one, waits
  for it in epmd and checks it once with the same `rpc` as Edeliver's health check (again every
  0.2 s while the app is still starting); then `wait`. What a careful person writes by hand.
- ansible: ansible-core (`pip install -e '.[bench]'`), forks = N, pipelining, host keys checked:
  `copy` the tarball, then one `shell` task with the script's node-side part.

Printed per N and method: median wall seconds, median CPU seconds of the deploying process tree
(user + system, from wait4) and the same per node in milliseconds, median peak RSS of that tree (all its processes summed, sampled
every 20 ms), and the ratio of the wall time to the script's. The 1-minute load average before
each N is printed too: other work on the machine slows every method alike.

With `--release stub` the release is bench/stub_release.py's stub of hello (a tarball with
`bin/hello` and `releases/<v>/`, whose "VM" is a bash waiting on a `sleep`, seen by the probe as
the release's VM): its start and health cost no CPU, so the deployer's own overhead shows, up to
N = 200. The race's project then has `[commands]` start = "bin/{app} daemon", the default stop
(SIGTERM) and the status file health check; the script and Ansible do the same node-side work
(stop by SIGTERM, start, check the status file), and each node is asked afterwards, over ssh,
which version its running stub booted (`bin/hello version`).

    .venv/bin/python bench/race.py [--sizes 1,5,10,20,40] [--runs 3] [--methods edeliver,script,ansible]
        [--release hello|stub]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stub_release
from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.local.config_file import load_config
from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.node_scripts import RPC_HEALTH, ReleaseCommands
from edeliver.cli.composition import release_store
from edeliver.cli.demo import prepare_project
from edeliver.core.domain.model import Artifact
from tests.support.hello_release import tarball
from tests.support.nodes import running_versions, ssh

VERSIONS = ("0.1.0", "0.2.0")
ENV = "race"
POLICY = 'strategy = "one_for_all"\nfallback = "rollback"\nstep_timeout = 300'
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Measure:
    wall: float
    cpu: float
    rss_mib: float


@dataclass(frozen=True)
class Release:
    """What is raced: the tarball of a version, the script's node-side work, the project's
    `[commands]` and how a node is asked which version runs."""

    tarball: Callable[[str], Path]
    node_side: Callable[[str, str], str]
    commands: str
    running_versions: Callable[[LocalFleet], dict[str, str | None]]


def hello_release() -> Release:
    return Release(lambda v: tarball(v, "good"), node_side, "", running_versions)


def stub(directory: Path) -> Release:
    return Release(
        lambda v: stub_release.stub_tarball(directory, v),
        stub_release.node_side,
        stub_release.COMMANDS,
        stub_versions,
    )


def stub_versions(fleet: LocalFleet) -> dict[str, str | None]:
    """Every node's running stub's version, asked in parallel (`bin/hello version`)."""

    def asked(node: FleetNode) -> tuple[str, str | None]:
        asking = f"cd {node.path}/current 2>/dev/null && bin/hello version"
        said = ssh(fleet, node, asking, timeout=120)  # 200 nodes on 2 cores answer slowly
        return node.name, (said.stdout.strip() or None) if said.returncode == 0 else None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(asked, fleet.nodes))


@dataclass
class Race:
    root: Path
    fleet: LocalFleet
    project: Path
    release: Release

    def edeliver(self, version: str) -> list[str]:
        cli = [sys.executable, "-m", "edeliver.cli", "-C", str(self.project)]
        return [*cli, "deploy", ENV, "--version", version]

    def script(self, version: str) -> list[str]:
        # From a file: at N = 200 the text is over the kernel's 128 KiB limit of one argument.
        path = self.root / f"script-{version}.sh"
        path.write_text(script_text(self.fleet, self.release, version))
        return ["bash", str(path)]

    def ansible(self, version: str) -> list[str]:
        directory = ansible_files(self.root, self.fleet, self.release, version)
        playbook = [str(VENV_BIN / "ansible-playbook"), "-i", "inventory.ini", "deploy.yml"]
        return ["sh", "-c", f"cd {shlex.quote(str(directory))} && exec {shlex.join(playbook)}"]


def node_side(path: str, version: str) -> str:
    """The node-side work of the script and of Ansible's shell task."""
    health = ReleaseCommands().render(RPC_HEALTH, "hello")
    return f"""set -e
P={shlex.quote(path)}; V={version}
rm -rf "$P/releases/$V"; mkdir -p "$P/releases/$V"
tar -xzf "$P/hello-$V.tar.gz" -C "$P/releases/$V"
old=$(pgrep -u "$(id -u)" -x beam.smp || true)
ln -sfn "releases/$V" "$P/current.new" && mv -fT "$P/current.new" "$P/current"
if [ -n "$old" ]; then kill -TERM $old; while kill -0 $old 2>/dev/null; do sleep 0.05; done; fi
cd "$P/current"; for e in erts-*/bin/epmd; do "$e" -daemon; done; bin/hello daemon
until erts-*/bin/epmd -names 2>/dev/null | grep -q '^name hello '; do sleep 0.05; done
n=0; until [ "$({health} 2>/dev/null | head -n 1)" = "$V" ]; do
  n=$((n + 1)); [ "$n" -le 150 ] || {{ echo "not healthy" >&2; exit 1; }}; sleep 0.2
done
"""


def ssh_options(fleet: LocalFleet) -> str:
    return (
        f"-i {shlex.quote(str(fleet.client_key))} "
        f"-o UserKnownHostsFile={shlex.quote(str(fleet.known_hosts))} "
        "-o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR"
    )


def script_text(fleet: LocalFleet, raced: Release, version: str) -> str:
    release, opts = raced.tarball(version), ssh_options(fleet)
    lines = ["pids=''"]
    for node in fleet.nodes:
        target = f"{node.user}@{node.host}"
        upload = f"{node.path}/hello-{version}.tar.gz"
        scp = f"scp -q {opts} -P {node.port} {shlex.quote(str(release))} {target}:{upload}"
        work = shlex.quote(raced.node_side(node.path, version))
        ssh = f"ssh {opts} -p {node.port} {target} {work}"
        lines.append(f'( {scp} && {ssh} ) & pids="$pids $!"')
    lines.append('rc=0; for p in $pids; do wait "$p" || rc=1; done; exit "$rc"')
    return "\n".join(lines) + "\n"


def ansible_files(root: Path, fleet: LocalFleet, raced: Release, version: str) -> Path:
    directory = root / "ansible"
    directory.mkdir(exist_ok=True)
    hosts = [
        f"{n.name} ansible_host={n.host} ansible_port={n.port} ansible_user={n.user} "
        f"ansible_ssh_private_key_file={fleet.client_key}"
        for n in fleet.nodes
    ]
    (directory / "inventory.ini").write_text("[nodes]\n" + "\n".join(hosts) + "\n")
    (directory / "ansible.cfg").write_text(
        f"[defaults]\nforks = {len(fleet.nodes)}\nhost_key_checking = True\n"
        "interpreter_python = /usr/bin/python3\nstdout_callback = default\n"
        "[ssh_connection]\npipelining = True\n"
        f"ssh_args = -o UserKnownHostsFile={fleet.known_hosts} -o ControlMaster=auto "
        "-o ControlPersist=60s\n"
    )
    path = fleet.nodes[0].path
    (directory / "deploy.yml").write_text(
        "- hosts: nodes\n  gather_facts: false\n  tasks:\n"
        f"    - copy: {{src: {raced.tarball(version)}, "
        f"dest: {path}/hello-{version}.tar.gz, mode: '0600'}}\n"
        f"    - shell: {_yaml_string(raced.node_side(path, version))}\n"
    )
    return directory


def _yaml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def measured(command: list[str]) -> Measure:
    """Wall time, CPU (wait4 rusage: the process and every descendant it reaped) and the peak
    of the summed RSS of its process tree."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    peak = [0]
    sampler = threading.Thread(target=_sample_rss, args=(process.pid, peak), daemon=True)
    sampler.start()
    output = process.stdout.read() if process.stdout else b""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    sampler.join()
    if process.returncode != 0:
        text = output.decode(errors="replace")
        # A failed node's line names why; at N = 200 the table's tail shows only rolled-back ones.
        why = "\n".join([line for line in text.splitlines() if "failed" in line][:20])
        raise SystemExit(f"{command[:4]}… failed ({process.returncode}):\n{why}\n…\n{text[-3000:]}")
    return Measure(wall, usage.ru_utime + usage.ru_stime, peak[0] / 1024)


def _sample_rss(root: int, peak: list[int]) -> None:
    while Path(f"/proc/{root}").exists():
        peak[0] = max(peak[0], sum(_rss_kib(p) for p in _tree(root)))
        time.sleep(0.02)


def _tree(root: int) -> list[int]:
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        try:  # a process may end between the reads: what it had is gone with it
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                queue += [int(c) for c in task.read_text().split()]
        except OSError:
            continue
    return found


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def race_one_size(n: int, runs: int, methods: list[str], kind: str) -> dict[str, list[Measure]]:
    root = Path(tempfile.mkdtemp(prefix="edeliver-race-"))
    fleet = LocalFleet(root / "fleet", n)
    try:
        fleet.start()
        release = stub(root / "stub") if kind == "stub" else hello_release()
        race = Race(root, fleet, project(root, fleet, release), release)
        store_releases(race.project, release)
        subprocess.run(race.edeliver(VERSIONS[0]), check=True, capture_output=True)
        return timed_runs(race, runs, methods)
    finally:
        fleet.stop()
        shutil.rmtree(root, ignore_errors=True)


def project(root: Path, fleet: LocalFleet, release: Release) -> Path:
    directory = prepare_project(root, fleet, ENV, POLICY)
    with (directory / ".deliver/edeliver.toml").open("a") as config:
        config.write(release.commands)
    return directory


def timed_runs(race: Race, runs: int, methods: list[str]) -> dict[str, list[Measure]]:
    results: dict[str, list[Measure]] = {m: [] for m in methods}
    running = VERSIONS[0]
    for _ in range(runs):
        for method in methods:
            running = VERSIONS[1] if running == VERSIONS[0] else VERSIONS[0]
            command: Callable[[str], list[str]] = getattr(race, method)
            as_a_new_version(race.fleet, running)
            results[method].append(measured(command(running)))
            check_every_node_runs(race, running, method)
    return results


def as_a_new_version(fleet: LocalFleet, version: str) -> None:
    """Remove `version` (not the running one) from every node, untimed, before a method deploys
    it: users deploy versions their nodes do not hold yet. Kept from two runs before, its
    unpacked release and upload would spare Edeliver the upload and the unpack that the script
    and Ansible do every time."""
    for node in fleet.nodes:
        shutil.rmtree(node.root / "releases" / version, ignore_errors=True)
        for upload in (node.root / ".edeliver" / "uploads").glob(f"hello-{version}.tar.gz*"):
            upload.unlink()


def store_releases(project: Path, release: Release) -> None:
    config = load_config(project)
    store = release_store(project, config)
    for version in VERSIONS:
        asyncio.run(
            store.put(
                release.tarball(version),
                Artifact("hello", version, "", 0, platform=local_platform()),
            )
        )


def check_every_node_runs(race: Race, version: str, method: str) -> None:
    wrong = {n: v for n, v in race.release.running_versions(race.fleet).items() if v != version}
    if wrong:
        raise SystemExit(f"{method} left nodes not on {version}: {wrong}")


VM_COMMS = {"beam.smp", "erl_child_setup", "epmd", "run_erl", "inet_gethost", "heart"}


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
        tarballs = [f"hello-{version}.tar.gz" for version in VERSIONS]
        for entry in ("releases", ".edeliver", "current", *tarballs):
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


def report(n: int, load: float, results: dict[str, list[Measure]]) -> None:
    base = statistics.median(m.wall for m in results["script"]) if "script" in results else None
    for method, measures in results.items():
        wall = statistics.median(m.wall for m in measures)
        cpu = statistics.median(m.cpu for m in measures)
        rss = statistics.median(m.rss_mib for m in measures)
        ratio = f"{wall / base:>6.2f}" if base else "     -"
        per_node = 1000 * cpu / n
        print(
            f"{n:>4} {method:<9} {wall:>8.2f} {ratio} {cpu:>8.2f} {per_node:>8.0f} {rss:>9.1f}"
            f" {load:>5.1f}"
        )
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,5,10,20,40")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--methods", default="edeliver,script,ansible")
    parser.add_argument("--release", choices=("hello", "stub"), default="hello")
    args = parser.parse_args()
    methods = args.methods.split(",")
    if "ansible" in methods and not (VENV_BIN / "ansible-playbook").exists():
        raise SystemExit("ansible-playbook not in this venv: .venv/bin/pip install -e '.[bench]'")
    for version in VERSIONS:
        tarball(version, "good")  # built (or found in the cache) before anything is timed
    compile_edeliver()
    print(
        f"# {os.cpu_count()} cores; {tree()}; {args.release} release;"
        f" median of {args.runs} redeploys per method"
    )
    print(
        f"{'N':>4} {'method':<9} {'wall s':>8} {'ratio':>6} {'CPU s':>8} {'ms/node':>8}"
        f" {'RSS MiB':>9} {'load':>5}"
    )
    for n in (int(s) for s in args.sizes.split(",")):
        load = os.getloadavg()[0]
        report(n, load, race_one_size(n, args.runs, methods, args.release))


def compile_edeliver() -> None:
    """Byte-compile the modules where `edeliver` is imported from, as `pip install` does: with
    PYTHONDONTWRITEBYTECODE set (as on this project's machines), every `edeliver` run would
    compile them from source again, a cost no installed copy has. An editable install in
    strict mode imports them from its link tree under build/, whose `__pycache__` is not the
    source tree's."""
    import edeliver

    compileall.compile_dir(Path(edeliver.__file__).parent, quiet=1)


def tree() -> str:
    root = str(Path(__file__).resolve().parents[1])
    args = ["git", "-C", root, "describe", "--always", "--dirty"]
    return (
        "tree " + subprocess.run(args, capture_output=True, text=True, check=False).stdout.strip()
    )


if __name__ == "__main__":
    main()
