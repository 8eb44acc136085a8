"""The node scripts of the asyncssh NodeShell: parsers as tables, scripts run by a local `sh`.

Running the scripts here, in a temp dir whose name has a space, quotes and a `$`, checks their
quoting and their idempotence without SSH; the contract suite runs them on real sshd nodes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from edeliver.adapters.node import (
    health_scripts,
    hot_scripts,
    install_scripts,
    node_state,
    switch_scripts,
    vm_calls,
)
from edeliver.adapters.node import node_scripts as ns
from edeliver.adapters.node.archive_check import listing_problems
from edeliver.adapters.node.node_scripts import Layout, ReleaseCommands
from edeliver.adapters.node.node_state import Vm
from edeliver.adapters.node.switch_scripts import Switch

PHYS = "/srv/it's here"
BEAM = [
    f"{PHYS}/releases/0.1.0/erts-13.1.5/bin/beam.smp", "--", "-root", f"{PHYS}/releases/0.1.0",
    "-progname", "erl", "--", "-boot", f"{PHYS}/releases/0.1.0/releases/0.1.0/start", "--",
]  # fmt: skip


def vm_line(pid: int, argv: list[str]) -> str:
    return "\x1f".join([f"/proc/{pid}/cmdline", *argv, ""])


@pytest.mark.parametrize(
    ("getconf", "ldd", "expected"),
    [
        ("glibc 2.36", "", ("glibc", "2.36")),
        ("", "ldd (Debian GLIBC 2.36-9+deb12u4) 2.36 Copyright (C) 2022", ("glibc", "2.36")),
        ("", "ldd (GNU libc) 2.28 ", ("glibc", "2.28")),
        ("", "musl libc (x86_64) Version 1.2.4 ", ("musl", "1.2.4")),
        ("", "sh: 1: ldd: not found ", ("", "")),
    ],
)
def test_libc_is_read_from_getconf_or_ldd(
    getconf: str, ldd: str, expected: tuple[str, str]
) -> None:
    """glibc from getconf, else glibc or musl from `ldd --version`, else unknown."""
    assert node_state.parse_libc(getconf, ldd) == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (BEAM, Vm(42, f"{PHYS}/releases/0.1.0", "0.1.0")),
        # after a hot upgrade and restart the root holds several versions: the boot one counts
        (
            [*BEAM[:-2], f"{PHYS}/releases/0.1.0/releases/0.2.0/start", "--"],
            Vm(42, f"{PHYS}/releases/0.1.0", "0.2.0"),
        ),
        ([f"{PHYS}/releases/0.1.0/erts-13.1.5/bin/run_erl", "-daemon", *BEAM[1:]], None),
        ([BEAM[0], "-root", "/elsewhere/releases/0.1.0"], None),
        ([*BEAM[:-2], f"{PHYS}/releases/0.1.0/releases/0.1.0/start_clean", "--"], None),
        ([*BEAM, "-extra", "--no-halt", "+iex", "--remsh", "hello"], None),
        ([*BEAM, "-extra", "--rpc-eval", "hello", "IO.puts(1)"], None),
        ([*BEAM, "-extra", "--eval", "Process.sleep(1)"], None),
        (BEAM[:-3], None),
        ([BEAM[0], "-root", f"{PHYS}/releases/0.1.0/nested"], None),
        (["grep", "-l", f"{PHYS}/releases/"], None),
        ([], None),
    ],
    ids=[
        "beam", "booted another version", "run_erl", "other root", "clean boot", "console",
        "rpc", "eval", "no boot", "nested", "grep", "empty",
    ],
)  # fmt: skip
def test_a_vm_is_the_releases_own_beam_started_from_a_release_under_the_path(
    argv: list[str], expected: Vm | None
) -> None:
    """Only the release's own BEAM whose -root is <path>/releases/<dir> counts, never a
    console or an rpc/eval VM of that release; the version is the booted one."""
    assert node_state.parse_vm(vm_line(42, argv), PHYS) == expected


def test_a_probe_reports_running_and_current_versions_and_complete_releases() -> None:
    """The probe's key=value lines become NodeFacts; releases keep their mtime order apart."""
    output = "\n".join([
        "os=Linux", "arch=aarch64", "getconf=glibc 2.36", "ldd=", "free_kb=2048",
        "current=releases/0.2.0", f"phys={PHYS}", "release=0.2.0", "release=0.1.0",
        "last.previous=0.1.0", "vm=" + vm_line(7, BEAM),
    ])  # fmt: skip
    state = node_state.parse_probe(output)
    assert str(state.facts.platform) == "linux/aarch64/glibc-2.36"
    assert state.facts.free_bytes == 2048 * 1024
    assert (state.facts.current_version, state.facts.running_version) == ("0.2.0", "0.1.0")
    assert state.facts.releases == ("0.1.0", "0.2.0")
    assert state.releases_by_age == ("0.2.0", "0.1.0")
    assert state.last == {"previous": "0.1.0"}
    assert not state.launching


def test_a_run_erl_of_a_release_under_the_path_means_a_vm_is_launching() -> None:
    """run_erl outlives the boot scripts and lives as long as its VM: the VM is on its way."""
    run_erl = [f"{PHYS}/releases/0.1.0/erts-13.1.5/bin/run_erl", "-daemon", f"{PHYS}/x/"]
    state = node_state.parse_probe(f"phys={PHYS}\nvm={vm_line(8, run_erl)}\n")
    assert state.launching and state.vms == () and state.launchers == (8,)


def health_output(answer: str) -> str:
    return "\n".join([
        f"phys={PHYS}", "current=releases/0.1.0", "root_ino=1234 0.1.0", "vm=" + vm_line(7, BEAM),
        "health=0.1.0", f"health={answer}", "health_rc=0",
    ])  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "another"),
    [
        ("edeliver_vm=7 1234", False),
        ("(a custom health command that does not say who answered)", False),
        ("edeliver_vm=9 1234", True),  # another VM of this node, or a namesake's pid
        ("edeliver_vm=7 999", True),  # the same pid on another node: its root is another dir
    ],
    ids=["ours", "unsaid", "other pid", "other node"],
)
def test_a_health_check_answered_by_a_vm_that_is_not_this_nodes_release_vm_does_not_count(
    answer: str, another: bool
) -> None:
    """The default rpc says the answering VM's pid and root inode: both must be this node's."""
    health = health_scripts.parse_health(health_output(answer))
    assert (health.running, health.code) == (("0.1.0",), 0)
    assert (health.answered_by_another_vm() is not None) == another


@pytest.mark.parametrize(
    ("newest_first", "keep", "protected", "pruned"),
    [
        (["5", "4", "3", "2", "1"], 5, set(), []),
        (["6", "5", "4", "3", "2", "1"], 5, set(), ["1"]),
        (["3", "2", "1"], 1, {"3", "1"}, ["2"]),
        (["3", "2", "1"], 2, {"1"}, []),
        ([], 5, set(), []),
    ],
)
def test_housekeeping_keeps_the_newest_and_the_protected(
    newest_first: list[str], keep: int, protected: set[str], pruned: list[str]
) -> None:
    """All but the `keep` newest go, except the protected (current, previous, running)."""
    assert switch_scripts.prune(newest_first, keep, protected) == pruned


def test_commands_fill_in_the_app_and_the_default_health_proves_the_app_started() -> None:
    """`{app}` is replaced; the default health check asks the VM (erl_call, else rpc) for the
    started app's version; the default stop is by signal, no command."""
    commands = ReleaseCommands()
    assert commands.stop == ns.SIGNAL_STOP and commands.stops_by_signal
    health = commands.render(commands.health, "hello")
    assert health.startswith("vm_health hello || ")  # erl_call, no VM booted; else the rpc:
    health = commands.render(ns.RPC_HEALTH, "hello")
    assert health.startswith("bin/hello rpc '") and "started_applications(), :hello, 0)" in health
    assert "Application.started_applications()" in health
    assert "vsn -> IO.puts(vsn)" in health and "{{" not in health
    assert "System.pid()" in health and "File.stat!(:code.root_dir()).inode" in health


@pytest.mark.parametrize("app", ["Hello", "he llo", "", "a;b"])
def test_an_app_name_that_is_not_an_otp_name_is_refused(app: str) -> None:
    with pytest.raises(ValueError, match="app name"):
        Layout("/srv/hello", app)


@pytest.mark.parametrize("version", ["../1.0", "1 0", ".hidden", ""])
def test_a_version_that_is_not_a_plain_name_is_refused(version: str) -> None:
    with pytest.raises(ValueError, match="version"):
        Layout("/srv/hello", "hello").upload(version)


# -- the scripts, run by a local sh --------------------------------------------------------------


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(str(tmp_path / 'it\'s a "deploy" $HOME dir'), "hello")


def run(script: str) -> subprocess.CompletedProcess[str]:
    """Run a script the way the adapter does, minus SSH."""
    return subprocess.run(
        ns.REMOTE_SH, shell=True, input=script, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("running", "expected"),
    [
        ("", " "),
        (  # a console's VM first (not the release's), then the release's VM, then another
            vm_line(7, [*BEAM, "-remsh", "hello@host", "-sname", "rem"])
            + "\n"
            + vm_line(42, [*BEAM, "-sname", "hello", "-setcookie"])
            + "\n"
            + vm_line(43, [*BEAM, "-sname", "other"]),
            "42 -sname hello",
        ),
        (vm_line(9, [*BEAM, "-name", "hello@h.example"]), "9 -name hello@h.example"),
        (vm_line(5, ["/usr/bin/run_erl", "-daemon"]), " "),  # not a beam
        (vm_line(8, BEAM), "8 "),  # a release VM without distribution: no name to ask
    ],
)
def test_the_release_vm_and_its_node_name_are_read_by_the_shell(
    running: str, expected: str
) -> None:
    """`release_vm` (vm_calls) reads `vms` lines with the shell alone: the pid and the
    `-sname`/`-name` argument of the release's own VM, never a console's."""
    lines = "\n".join(f"vm={line}" for line in running.splitlines())  # as `vms` prints them
    script = f'{vm_calls.VM_CALLS}release_vm {ns.q(lines)}\necho "$vm_pid $arg"\n'
    done = run(script)
    assert (done.returncode, done.stdout) == (0, expected + "\n"), done.stderr


@pytest.mark.parametrize("dist", ["-sname hello", ""])
def test_a_vm_named_by_the_probe_is_asked_without_looking_in_proc_again(
    tmp_path: Path, dist: str
) -> None:
    """With `VM_DIST` (the flag a probe found, see hot_scripts), `vm_call` hands it to erl_call
    and never runs `vms`; without it, it looks (`vms`) and asks the VM it finds."""
    root = tmp_path / "rel"
    (root / "erts-13.1.5" / "bin").mkdir(parents=True)
    (root / "releases").mkdir()
    (root / "releases" / "COOKIE").write_text("c00kie\n")
    erl_call = root / "erts-13.1.5" / "bin" / "erl_call"
    erl_call.write_text('#!/bin/sh\necho "$*" >>"$0.args"; cat >/dev/null; echo "{ok, 42}"\n')
    erl_call.chmod(0o755)
    found = vm_line(42, [*BEAM, "-sname", "found"])
    fake_vms = (
        f"vms() {{ echo looked >>{ns.q(str(tmp_path / 'vms'))}; echo {ns.q('vm=' + found)}; }}\n"
    )
    script = (
        f"{vm_calls.VM_CALLS}{fake_vms}S={ns.q(str(tmp_path))}; cd {ns.q(str(root))}\n"
        f"VM_DIST={ns.q(dist)}\nvm_call 'ok.'; echo \"$? $said\"\n"
    )
    done = run(script)
    assert done.stdout == "0 {ok, 42}\n", done.stderr
    asked = (root / "erts-13.1.5" / "bin" / "erl_call.args").read_text()
    assert asked == f"{dist or '-sname found'} -e\n"
    assert (tmp_path / "vms").exists() is (not dist)


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ('{ok, {"0.2.0", "4242", 1234567}}', "0.2.0\nedeliver_vm=4242 1234567\n"),
        ("{ok, not_started}", "hello is not started\n"),
        ('{ok, {"0.2.0", "42x", 12}}', ""),  # not the answer's shape: nothing said
        ("{ok, {badrpc, nodedown}}", ""),
    ],
)
def test_the_vms_health_answer_is_taken_apart_by_the_shell(said: str, expected: str) -> None:
    """`vm_health` turns erl_call's answer into what the health parser reads, by parameter
    expansion (vm_call stubbed to answer `said`)."""
    stub = f"vm_call() {{ said={ns.q(said)}; return 0; }}\n"
    done = run(f"{vm_calls.VM_CALLS}{vm_calls.VM_HEALTH}{stub}vm_health hello\n")
    assert done.stdout == expected, done.stderr


def release_tarball(tmp_path: Path, version: str) -> tuple[Path, str]:
    source = tmp_path / f"src-{version}"
    (source / "bin").mkdir(parents=True)
    (source / "bin" / "hello").write_text("#!/bin/sh\n")
    (source / "releases" / version).mkdir(parents=True)
    archive = tmp_path / f"hello-{version}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for top in ("bin", "releases"):
            tar.add(source / top, arcname=top)
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_a_probe_of_a_missing_deploy_path_reports_an_empty_node(layout: Layout) -> None:
    """Free space comes from the nearest existing parent; nothing is current or running."""
    state = node_state.parse_probe(run(node_state.probe_script(layout)).stdout)
    assert state.facts.platform.os == "linux" and state.facts.free_bytes > 0
    assert (state.facts.current_version, state.vms, state.facts.releases) == (None, (), ())


def test_a_probe_says_what_is_at_an_upload_path_and_changes_nothing(layout: Layout) -> None:
    """Nothing, a partial, a kept upload: each read as such (under a path with quotes), and
    the probe leaves the files as they were (a wrong upload is the prepare's to drop)."""
    upload = layout.upload("1.0.0")

    def seen() -> str | None:
        probed = run(node_state.probe_script(layout, upload)).stdout
        return node_state.parse_probe(probed).uploads.get(upload)

    assert seen() == "none"
    Path(upload).parent.mkdir(parents=True)
    Path(upload + ".partial").write_bytes(b"half")
    assert seen() == "partial"
    Path(upload).write_bytes(b"not even the release")
    assert seen() == "kept"
    assert Path(upload).read_bytes() == b"not even the release"
    assert Path(upload + ".partial").read_bytes() == b"half"


def test_a_hot_probe_says_what_is_at_any_package_path_to_a_version(layout: Layout) -> None:
    """The package's path names the version the node runs, unknown before the probe: the
    probe lists every upload of a package to the version (under a path with quotes); any
    other package path to it reads as none, and one to another version as not looked at."""
    package = layout.upload("2.0.0-from-1.0.0")

    def state() -> node_state.NodeState:
        script = node_state.probe_script(layout) + hot_scripts.releases_report(layout, "2.0.0")
        return node_state.parse_probe(run(script).stdout)

    assert state().upload_state(package) == "none"
    Path(package).parent.mkdir(parents=True)
    Path(package + ".partial").write_bytes(b"half")
    assert state().upload_state(package) == "partial"
    Path(package).write_bytes(b"whole")
    seen = state()
    assert seen.upload_state(package) in ("kept", "partial")  # both there: not none
    assert seen.upload_state(layout.upload("2.0.0-from-0.9.0")) == "none"
    assert seen.upload_state(layout.upload("3.0.0-from-2.0.0")) is None
    assert Path(package).read_bytes() == b"whole"


def test_upload_install_and_switch_scripts_work_under_a_path_with_quotes(
    layout: Layout, tmp_path: Path
) -> None:
    """Verified upload, unpack into place, switch current, then clean up: each twice is fine."""
    archive, sha = release_tarball(tmp_path, "1.0.0")
    assert run(install_scripts.upload_state_script(layout, "1.0.0", sha)).stdout == ""
    Path(layout.upload("1.0.0") + ".partial").write_bytes(archive.read_bytes())
    assert run(install_scripts.finish_upload_script(layout, "1.0.0", sha)).returncode == 0
    assert run(install_scripts.upload_state_script(layout, "1.0.0", sha)).stdout == "done\n"
    for _ in range(2):
        state = run(install_scripts.install_state_script(layout, "1.0.0")).stdout
        if state.startswith("listing"):
            assert listing_problems(state.splitlines()[1:]) == []
            assert run(install_scripts.unpack_script(layout, "1.0.0")).returncode == 0
    assert state == "installed\n"
    commands = ReleaseCommands(start="true", stop="true")
    switch = Switch(to="1.0.0", record=("activate", "1.0.0", "", sha))
    for _ in range(2):
        done = run(switch_scripts.switch_script(layout, commands, switch))
        assert done.returncode == 0, done.stderr
    assert os.readlink(f"{layout.path}/current") == "releases/1.0.0"
    # edeliver 1.x's path to the release script, through `current` (absolute: see legacy_bin_link)
    assert os.readlink(f"{layout.path}/bin/hello") == f"{layout.path}/current/bin/hello"
    assert (
        Path(f"{layout.path}/bin/hello").resolve()
        == Path(f"{layout.path}/releases/1.0.0/bin/hello").resolve()
    )
    state_after = node_state.parse_probe(run(node_state.probe_script(layout)).stdout)
    assert state_after.facts.releases == ("1.0.0",)
    assert state_after.last["sha256"] == sha
    empty = Switch(to=None, remove=("1.0.0",))
    for _ in range(2):
        assert run(switch_scripts.switch_script(layout, commands, empty)).returncode == 0
    assert sorted(os.listdir(layout.path)) == [".edeliver", "bin", "releases", "shared"]
    assert os.listdir(f"{layout.path}/releases") == []


def test_the_1x_script_path_is_made_once_and_never_over_a_users_file(
    layout: Layout, tmp_path: Path
) -> None:
    """A `bin/hello` of the user's stays as it is; a missing one becomes the link."""
    Path(f"{layout.path}/bin").mkdir(parents=True)
    Path(f"{layout.path}/bin/hello").write_text("mine\n")
    assert run(layout.prelude() + switch_scripts.legacy_bin_link()).returncode == 0
    assert Path(f"{layout.path}/bin/hello").read_text() == "mine\n"
    Path(f"{layout.path}/bin/hello").unlink()
    assert run(layout.prelude() + switch_scripts.legacy_bin_link()).returncode == 0
    assert os.readlink(f"{layout.path}/bin/hello") == f"{layout.path}/current/bin/hello"


def test_a_partial_upload_with_the_wrong_checksum_is_deleted(layout: Layout) -> None:
    """finish_upload exits 4 with the checksum it got, and removes the partial."""
    run(install_scripts.upload_state_script(layout, "1.0.0", "0" * 64))
    partial = Path(layout.upload("1.0.0") + ".partial")
    partial.write_bytes(b"not it")
    done = run(install_scripts.finish_upload_script(layout, "1.0.0", "0" * 64))
    assert (done.returncode, done.stdout.strip()) == (4, hashlib.sha256(b"not it").hexdigest())
    assert not partial.exists()


def test_an_archive_that_is_not_that_release_is_not_installed(
    layout: Layout, tmp_path: Path
) -> None:
    """A tarball without releases/<version> is refused and leaves no partial dir behind."""
    archive, sha = release_tarball(tmp_path, "1.0.0")
    run(install_scripts.upload_state_script(layout, "2.0.0", sha))
    Path(layout.upload("2.0.0")).write_bytes(archive.read_bytes())
    done = run(install_scripts.unpack_script(layout, "2.0.0"))
    assert done.returncode == 6 and "not a release of hello 2.0.0" in done.stderr
    assert os.listdir(f"{layout.path}/releases") == []


def test_the_health_command_is_not_run_while_no_vm_runs(layout: Layout, tmp_path: Path) -> None:
    """An `rpc` health check boots a VM; with none of ours running it would be wasted."""
    marker = tmp_path / "health-ran"
    commands = ns.ReleaseCommands(health=f"touch {marker}")
    Path(layout.path, "current").mkdir(parents=True)
    health = health_scripts.parse_health(run(health_scripts.health_script(layout, commands)).stdout)
    assert (health.running, health.code) == ((), 1)
    assert "no VM runs yet" in health.said
    assert not marker.exists()


@pytest.mark.parametrize("name", ["edeliver-run-", "x; rm -rf /", "edeliver-run-ab cd"])
def test_a_run_name_that_is_not_ours_is_refused(name: str) -> None:
    """The name goes into a command line and a `case` pattern unquoted: only hex is allowed."""
    with pytest.raises(ValueError, match="run name"):
        ns.named_remote_sh(name)
    with pytest.raises(ValueError, match="run name"):
        ns.stop_run_script(name)


@pytest.mark.parametrize(
    ("held", "node_has", "given", "switched"),
    [(True, "3", 3, True), (True, "4", 3, False), (False, "3", 3, False)],
)
def test_a_switch_script_acts_only_while_its_generation_holds_the_node(
    layout: Layout, held: bool, node_has: str, given: int, switched: bool
) -> None:
    """Given the generation of the node's held lock it switches; given an older one, or with
    the lock's holder gone, it exits 9 and leaves the node untouched."""
    release = Path(layout.path) / "releases/1.0.0"
    (release / "bin").mkdir(parents=True)
    (release / "releases/1.0.0").mkdir(parents=True)
    state = Path(layout.path) / ".edeliver"
    state.mkdir()
    (state / "lock.generation").write_text(node_has + "\n")
    holder = subprocess.Popen(["flock", str(state / "lock"), "sleep", "60"]) if held else None
    try:
        if holder:
            wait_for_lock(state / "lock")
        switch = Switch(to="1.0.0", start=False, record=("activate", "1.0.0", "", ""))
        done = run(switch_scripts.switch_script(layout, ReleaseCommands(), switch, 1, given))
    finally:
        if holder:
            holder.kill()
            holder.wait()
    assert done.returncode == (0 if switched else 9), done.stderr
    assert os.path.islink(f"{layout.path}/current") == switched
    assert os.path.exists(f"{layout.path}/.edeliver/last") == switched


def wait_for_lock(lock: Path) -> None:
    """Until the holder started beside the test has the lock (polled with a deadline)."""
    deadline = time.monotonic() + 10
    while subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode == 0:
        assert time.monotonic() < deadline, "the holder never took the lock"
        time.sleep(0.05)


def fake_vm(layout: Layout, version: str) -> subprocess.Popen[bytes]:
    """A process whose command line names a release root under the path, as a VM's does.
    Python itself, not a `python3` found on PATH: a wrapper script (pyenv's shim) that catches
    SIGTERM before it execs Python exits 143 instead of dying by the signal."""
    root = Path(os.path.realpath(layout.path), "releases", version)
    code = "import time; time.sleep(300)"
    return subprocess.Popen([sys.executable, "-c", code, f"{root}/erts/bin/beam.smp"])


def test_a_vm_the_stop_command_cannot_reach_is_sent_sigterm_without_waiting_for_it(
    layout: Layout,
) -> None:
    """A VM still booting does not answer `bin/<app> stop`: it gets SIGTERM at once, not after
    the stop timeout (600 s here, which would outlast the run's own timeout)."""
    Path(layout.path, "releases", "1.0.0", "bin").mkdir(parents=True)
    Path(layout.path, "releases", "1.0.0", "releases", "1.0.0").mkdir(parents=True)
    vm, launcher = fake_vm(layout, "1.0.0"), fake_vm(layout, "1.0.0")
    root = str(Path(os.path.realpath(layout.path), "releases", "1.0.0"))
    switch = Switch((Vm(vm.pid, root, "1.0.0"),), "1.0.0", False, launchers=(launcher.pid,))
    commands = ReleaseCommands(start="true", stop="false")
    script = switch_scripts.switch_script(layout, commands, switch, 600.0)
    done = subprocess.run(
        ns.REMOTE_SH, shell=True, input=script,
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (vm.wait(), launcher.wait()) == (-15, -15)


def test_everything_the_switch_writes_is_prepared_before_a_vm_is_stopped(layout: Layout) -> None:
    """The new link, the link back, the record and the start log's header come before the first
    stop_vm; after it, only renames: a full disk fails the step while the old VM still runs."""
    record = ("activate", "2.0.0", "1.0.0", "x")
    switch = Switch((Vm(7, "/r", "1.0.0"),), "2.0.0", True, record, back="1.0.0")
    script = switch_scripts.switch_script(layout, ReleaseCommands(), switch)
    body = script[script.index('mkdir -p "$S" || exit 3') :]
    before, after = body.split("stop_vm 7", 1)
    for prepared in ("prepare_link 2.0.0", '"$S/current.back"', "prepare_record", "start.log"):
        assert prepared in before
    assert "ln " not in after and "prepare_" not in after and "start.log" not in after
    assert after.index('mv -f "$S/last.new"') < after.index('mv -fT "$S/current.new"')


def test_a_release_dir_something_still_writes_into_is_removed_without_failing(
    layout: Layout,
) -> None:
    """`rm -rf` races a writer ("Directory not empty"): the dir is renamed aside at once, so the
    release is gone from its place and the switch succeeds; a leftover goes next time."""
    for version in ("1.0.0", "2.0.0"):
        Path(layout.path, "releases", version, "bin").mkdir(parents=True)
        Path(layout.path, "releases", version, "releases", version).mkdir(parents=True)
    writing_in = Path(layout.path, "releases", "1.0.0", "tmp")
    writing_in.mkdir()
    writer = subprocess.Popen(
        ["sh", "-c", "i=0; while :; do mkdir -p d$i && touch d$i/f; i=$((i + 1)); done"],
        cwd=writing_in,
    )
    try:
        switch = Switch(to="2.0.0", start=False, remove=("1.0.0",))
        done = run(
            switch_scripts.switch_script(layout, ReleaseCommands(start="true", stop="true"), switch)
        )
    finally:
        writer.kill()
        writer.wait()
    assert done.returncode == 0, done.stderr
    assert not Path(layout.path, "releases", "1.0.0").exists()
    again = run(
        switch_scripts.switch_script(layout, ReleaseCommands(), Switch(to="2.0.0", start=False))
    )
    assert again.returncode == 0, again.stderr
    assert sorted(os.listdir(Path(layout.path, "releases"))) == ["2.0.0"]


def test_with_no_stop_command_the_vm_alone_is_sent_sigterm(layout: Layout, tmp_path: Path) -> None:
    """The default stop boots no VM: the release's VM gets SIGTERM, and no command runs."""
    Path(layout.path, "releases", "1.0.0", "bin").mkdir(parents=True)
    Path(layout.path, "releases", "1.0.0", "releases", "1.0.0").mkdir(parents=True)
    vm = fake_vm(layout, "1.0.0")
    root = str(Path(os.path.realpath(layout.path), "releases", "1.0.0"))
    switch = Switch((Vm(vm.pid, root, "1.0.0"),), "1.0.0", False)
    done = run(switch_scripts.switch_script(layout, ReleaseCommands(start="true"), switch, 600.0))
    assert done.returncode == 0, done.stderr
    assert vm.wait() == -15
    assert "stop_command)" not in switch_scripts.switch_script(layout, ReleaseCommands(), switch)


def test_the_health_command_runs_once_the_vm_is_registered_with_epmd(
    layout: Layout, tmp_path: Path
) -> None:
    """A VM that is up but not yet listed by epmd is waited for on the node, so the one health
    command (an `rpc` by default) comes when the VM can answer it."""
    release = Path(layout.path, "releases", "1.0.0")
    epmd = release / "erts-1" / "bin" / "epmd"
    epmd.parent.mkdir(parents=True)
    names = tmp_path / "names"
    names.write_text("")
    epmd.write_text(f"#!/bin/sh\ncat '{names}'\n")
    epmd.chmod(0o755)
    os.symlink("releases/1.0.0", Path(layout.path, "current"))
    beam = f"{os.path.realpath(release)}/erts-1/bin/beam.smp"
    code = "import time; time.sleep(60)"
    vm = subprocess.Popen([beam, "-c", code, "-sname", "hello"], executable=sys.executable)
    wait_for_cmdline(vm.pid, beam)
    registers = subprocess.Popen(["sh", "-c", f"sleep 0.3; echo 'name hello at port 1' >'{names}'"])
    try:
        commands = ReleaseCommands(health=f"grep -q hello '{names}'")
        health = health_scripts.parse_health(
            run(health_scripts.health_script(layout, commands, 30)).stdout
        )
    finally:
        vm.kill()
        vm.wait()
        registers.wait()
    assert health.code == 0, health.said


def wait_for_cmdline(pid: int, first: str) -> None:
    """Until the process started beside the test shows its command line (polled, deadline)."""
    deadline = time.monotonic() + 10
    while not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(first.encode()):
        assert time.monotonic() < deadline, "the process never showed its command line"
        time.sleep(0.01)


def beam_lookalike(layout: Layout, version: str) -> subprocess.Popen[bytes]:
    """A process named as a release's BEAM is (`<root>/erts/bin/beam.smp`), without `-root`:
    the probe does not count it as the release's VM, the switch's check of its pids does."""
    root = Path(os.path.realpath(layout.path), "releases", version)
    argv = [f"{root}/erts/bin/beam.smp", "-c", "import time; time.sleep(300)"]
    return subprocess.Popen(argv, executable=sys.executable)


def test_a_switch_planned_from_a_state_the_node_left_changes_nothing(
    layout: Layout, tmp_path: Path
) -> None:
    """With `Unchanged` of an earlier probe, a switch exits STALE before writing anything
    while a VM runs that the probe did not see; once the node shows that state again, it
    switches."""
    archive, sha = release_tarball(tmp_path, "1.0.0")
    run(install_scripts.upload_state_script(layout, "1.0.0", sha))
    Path(layout.upload("1.0.0")).write_bytes(archive.read_bytes())
    assert run(install_scripts.unpack_script(layout, "1.0.0")).returncode == 0
    unchanged = switch_scripts.Unchanged.of(
        node_state.parse_probe(run(node_state.probe_script(layout)).stdout)
    )
    commands = ReleaseCommands(start="true", stop="true")
    switch = Switch(to="1.0.0", start=False, record=("activate", "1.0.0", "", sha))
    script = switch_scripts.switch_script(layout, commands, switch, unchanged=unchanged)
    vm = beam_lookalike(layout, "1.0.0")
    try:
        done = run(script)
    finally:
        vm.kill()
        vm.wait()
    assert done.returncode == switch_scripts.STALE, done.stderr
    edeliver = Path(layout.path, ".edeliver")
    assert not Path(layout.path, "current").is_symlink()
    assert not (edeliver / "last.new").exists() and not (edeliver / "current.new").exists()
    done = run(script)
    assert done.returncode == 0, done.stderr
    assert os.readlink(f"{layout.path}/current") == "releases/1.0.0"
