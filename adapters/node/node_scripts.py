"""The node side of the asyncssh NodeShell: POSIX `sh` scripts and the parsers of their output.

Pure functions only (no I/O), so every script and parser is testable as a table. Layout on a
node (DESIGN §6), `P` being the node's deploy path:

    P/releases/<version>/              complete release roots, renamed into place once unpacked
    P/releases/.<version>.partial/     an unpack in progress: never booted, never listed
    P/current -> releases/<version>    switched by rename: `ln -sfn` to a temp link, `mv -T`
    P/shared/                          files that outlive releases
    P/.edeliver/uploads/<app>-<version>.tar.gz   verified uploads (`.partial` until verified)
    P/.edeliver/last                   the last activation or rollback: version, previous, time
    P/.edeliver/start.log              output of the start and stop commands

The running version is read from `/proc/<pid>/cmdline` of the BEAM VM (`beam.smp ... -root
<release root> ... -boot <root>/releases/<vsn>/start`): no second VM is started, and since the
mix release scripts resolve their root with `pwd -P`, `-root` is the physical release dir, not
`current`. `/proc` is Linux-only; elsewhere no VM is ever seen running.

Every value put into a script goes through `shlex.quote`; scripts run under `sh`, never the
user's login shell (see `REMOTE_SH`).
"""

from __future__ import annotations

import itertools
import posixpath
import re
import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from edeliver.adapters.node.archive_check import LISTING
from edeliver.adapters.node.node_lock import generation_guard
from edeliver.adapters.node.runtime_env_files import SOURCE_RUNTIME_ENV
from edeliver.adapters.node.vm_calls import VM_CALLS, VM_HEALTH
from edeliver.core.domain.model import NodeFacts, Platform
from edeliver.core.domain.tasks import interpreter

# The only command line sent to the login shell: it reads the script from stdin, then runs it
# with `sh`. Reading it whole first leaves no script on stdin for the commands it starts, and
# this line means the same in sh, bash, zsh and fish.
REMOTE_SH = "sh -c 'eval \"$(cat)\"'"
RUN_NAME = re.compile(r"^edeliver-run-[0-9a-f]+$")


def named_remote_sh(run_name: str) -> str:
    """`REMOTE_SH` under a shell whose `$0` is `run_name`, visible in its /proc cmdline, so that
    a script cut short can be found and stopped (`stop_run_script`). The script runs in a
    subshell that is not the last command: a script ending in `exec` replaces the subshell, not
    the named shell, which stays the root of everything the script started."""
    if not RUN_NAME.match(run_name):
        raise ValueError(f"not a run name: {run_name!r}")
    return f'sh -c \'script="$(cat)"; (eval "$script"); exit $?\' {run_name}'


# The first field of /proc/<pid>/stat after the `(comm)` (which may hold spaces) is the state,
# then the parent pid: the awk program prints every pid in the trees under `roots`.
_TREE = r"""
awk -v roots="$roots" '
{ rest = $0; sub(/^.*\) /, "", rest); split(rest, field, " "); parent[$1] = field[2] }
END {
  n = split(roots, root, " "); for (i = 1; i <= n; i++) tree[root[i]] = 1
  for (grew = 1; grew; ) { grew = 0
    for (pid in parent) if (!(pid in tree) && (parent[pid] in tree)) { tree[pid] = 1; grew = 1 } }
  for (pid in tree) print pid
}'"""


def stop_run_script(run_name: str) -> str:
    """Kill the script named `run_name` and every process under it (a daemon that detached,
    like a started release, is no longer under it and lives on). Two passes, so that a child
    forked while the first pass ran is caught by the second. Needs only /proc, tr and awk."""
    if not RUN_NAME.match(run_name):
        raise ValueError(f"not a run name: {run_name!r}")
    return f"""
for pass in 1 2; do
  roots=""
  for dir in /proc/[0-9]*; do
    case "$({{ tr '\\000' ' ' < "$dir/cmdline"; }} 2>/dev/null)" in
      *" {run_name}"|*" {run_name} "*) roots="$roots ${{dir#/proc/}}" ;;
    esac
  done
  [ -n "$roots" ] || exit 0
  kill -KILL $(cat /proc/[0-9]*/stat 2>/dev/null | {_TREE.strip()}) 2>/dev/null
done
exit 0
"""


APP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")
q = shlex.quote

# Says which VM answered: its OS pid and the inode of its release root, as that VM sees them.
# Another node's VM (one node name given to several nodes) or an older VM of this node cannot
# give both this node's numbers, so the health check knows it asked the VM it started.
RPC_IDENTITY = 'IO.puts("edeliver_vm=#{System.pid()} #{File.stat!(:code.root_dir()).inode}")'
# Evaluated inside the release's VM, it waits there (cheaply, up to 10 s) for the app to be
# started, so one call does what polling would need several for.
_RPC_HEALTH = (
    "Enum.find_value(1..200, fn _ -> "
    "case List.keyfind(Application.started_applications(), :{app}, 0) do "
    "{_, _, vsn} -> vsn; nil -> Process.sleep(50); nil end end) |> case do "
    'nil -> raise "{app} is not started"; '
    "vsn -> IO.puts(vsn); " + RPC_IDENTITY + " end"
)
# `rpc` runs a second, short-lived VM on the node (~0.35 s of CPU): the health script runs it
# once, after the cheap readiness probe (`ready`: the VM is registered with epmd).
RPC_HEALTH = "bin/{app} rpc " + q(_RPC_HEALTH)
# The default health check: asked of the VM by `erl_call` (a C program in the release's erts:
# no VM boots, a few ms), which prints the same lines as RPC_HEALTH; where it cannot ask (no
# erl_call, no COOKIE file, a cookie set otherwise), the `rpc`.
ERL_CALL_HEALTH = "vm_health {app} || { [ $? -eq 2 ] && " + RPC_HEALTH + "; }"
# erlexec starts epmd through `sh -c` with the release path unquoted, which fails when the deploy
# path has a space or a quote; so start the release's own epmd first, quoted (a no-op when one
# already listens on ERL_EPMD_PORT).
MIX_START = 'for e in erts-*/bin/epmd; do "$e" -daemon; done >/dev/null 2>&1; bin/{app} daemon'
# No stop command: the release's VM is sent SIGTERM (a BEAM runs init:stop, as `bin/<app> stop`
# makes it do, without booting a second VM to ask it), SIGKILL after the stop timeout.
SIGNAL_STOP = ""
# The status file examples/hello writes once its tree is up (and removes when stopping): no VM.
STATUS_FILE_HEALTH = 'f=tmp/{app}.status; test -f "$f" && kill -0 "$(sed -n s/^pid=//p "$f")"'


@dataclass(frozen=True)
class ReleaseCommands:
    """How to start, stop and health-check a release; run from its root, `{app}` filled in.

    `health` exits 0 once the app is up; whether the right version runs is checked apart.
    An empty `stop` stops the VM by signal (`SIGNAL_STOP`).
    """

    start: str = MIX_START
    stop: str = SIGNAL_STOP
    health: str = ERL_CALL_HEALTH

    @property
    def stops_by_signal(self) -> bool:
        return not self.stop.strip()

    def render(self, template: str, app: str) -> str:
        # Only `{app}`: braces the user's shell command has (`${PORT}`, JSON) stay as written.
        return template.replace("{app}", q(app))

    def functions(self, app: str) -> str:
        """The commands as the shell functions `start_command`, `stop_command` and
        `health_command`. Each body is the command quoted whole and `eval`ed, never inlined:
        a `#`, a newline, an unbalanced `}` or `)` in a command cannot reach the script around
        it, and the command runs as written (comments, quotes, `$`, backslashes)."""
        return "".join(
            f"{name}_command() {{ eval {q(self.render(command, app))}\n}}\n"
            for name, command in (
                ("start", self.start),
                ("stop", self.stop),
                ("health", self.health),
            )
        )


@dataclass(frozen=True)
class Vm:
    """A BEAM VM running from a release under the deploy path."""

    pid: int
    root: str
    version: str

    @property
    def root_name(self) -> str:
        return posixpath.basename(self.root)


@dataclass(frozen=True)
class NodeState:
    """What the probe script saw: the facts, plus what the steps need to decide."""

    facts: NodeFacts
    vms: tuple[Vm, ...]
    releases_by_age: tuple[str, ...]  # newest first (mtime)
    last: dict[str, str]  # P/.edeliver/last
    launchers: tuple[int, ...] = ()  # run_erl pids of ours: their VM is starting or running

    @property
    def running(self) -> tuple[str, ...]:
        return tuple(vm.version for vm in self.vms)

    @property
    def launching(self) -> bool:
        return bool(self.launchers)


@dataclass(frozen=True)
class Layout:
    """The paths of one app on one node; every script starts with them as shell variables."""

    path: str
    app: str

    def __post_init__(self) -> None:
        if not APP_NAME.match(self.app):
            raise ValueError(f"app name {self.app!r} is not a plain lower-case OTP app name")
        if not self.path or "\n" in self.path:
            raise ValueError(f"bad deploy path {self.path!r}")

    def upload(self, version: str) -> str:
        return f"{self.path}/.edeliver/uploads/{self.upload_name(version)}"

    def upload_name(self, version: str) -> str:
        return f"{self.app}-{checked_version(version)}.tar.gz"

    def prelude(self) -> str:
        return (
            "set -u\n"
            f"P={q(self.path)}\nAPP={q(self.app)}\n"
            + SOURCE_RUNTIME_ENV
            + 'R="$P/releases"; S="$P/.edeliver"; U="$S/uploads"\n'
            'PHYS=$(cd "$P" 2>/dev/null && pwd -P) || PHYS=\n'
            # A complete release of version $1: renamed into place with its boot files.
            'complete() { [ -d "$R/$1/bin" ] && [ -d "$R/$1/releases/$1" ]; }\n'
        )


def checked_version(version: str) -> str:
    if not VERSION.match(version):
        raise ValueError(f"version {version!r} is not usable as a directory name")
    return version


# -- probe -------------------------------------------------------------------------------------

_VMS = r"""
vms() {
  [ -n "$PHYS" ] || return 0
  for f in $(grep -a -l -F -e "$PHYS/releases/" /proc/[0-9]*/cmdline 2>/dev/null); do
    printf 'vm=%s\037' "$f"; tr '\0\n' '\037 ' 2>/dev/null <"$f"; echo
  done
}
"""


def probe_script(layout: Layout) -> str:
    """Platform, free disk, current, complete releases (newest first), last record, VMs."""
    return (
        layout.prelude()
        + _VMS
        + r"""
echo "os=$(uname -s)"
echo "arch=$(uname -m)"
echo "getconf=$(getconf GNU_LIBC_VERSION 2>/dev/null)"
echo "ldd=$(ldd --version 2>&1 | head -n 2 | tr '\n' ' ')"
d=$P; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
echo "free_kb=$(df -Pk "$d" 2>/dev/null | awk 'NR == 2 {print $4}')"
echo "current=$(readlink "$P/current" 2>/dev/null)"
echo "phys=$PHYS"
if [ -d "$R" ]; then
  ls -1t "$R" | while IFS= read -r n; do if complete "$n"; then echo "release=$n"; fi; done
fi
if [ -f "$S/last" ]; then sed 's/^/last./' "$S/last"; fi
vms
"""
    )


def parse_probe(output: str) -> NodeState:
    fields: dict[str, list[str]] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields.setdefault(key, []).append(value)

    def one(key: str) -> str:
        return fields.get(key, [""])[-1].strip()

    phys = one("phys")
    vms = tuple(vm for line in fields.get("vm", []) if (vm := parse_vm(line, phys)))
    current = posixpath.basename(one("current").rstrip("/")) or None
    releases = tuple(fields.get("release", []))
    free_kb = one("free_kb")
    platform = Platform(one("os").lower(), one("arch"), *parse_libc(one("getconf"), one("ldd")))
    running = _running_version(vms, current)
    last = {k.removeprefix("last."): v[-1] for k, v in fields.items() if k.startswith("last.")}
    facts = NodeFacts(
        platform=platform,
        free_bytes=int(free_kb) * 1024 if free_kb.isdigit() else 0,
        running_version=running,
        current_version=current,
        releases=tuple(sorted(releases)),
        previous_version=(last.get("previous") or None) if last.get("version") == current else None,
    )
    launchers = tuple(pid for line in fields.get("vm", []) if (pid := _run_erl_pid(line, phys)))
    return NodeState(facts, vms, releases, last, launchers)


def _running_version(vms: Sequence[Vm], current: str | None) -> str | None:
    versions = [vm.version for vm in vms]
    if current in versions:
        return current
    return versions[0] if versions else None


def parse_libc(getconf: str, ldd: str) -> tuple[str, str]:
    """("glibc", "2.36") from `getconf GNU_LIBC_VERSION`, else from `ldd --version` (musl)."""
    if match := re.match(r"glibc\s+(\S+)", getconf.strip()):
        return "glibc", match.group(1)
    if match := re.search(r"(?:GLIBC|GNU libc)[^)]*\)\s+(\d+(?:\.\d+)+)", ldd):
        return "glibc", match.group(1)
    if "musl" in ldd and (match := re.search(r"Version\s+(\S+)", ldd)):
        return "musl", match.group(1)
    return "", ""


def _run_erl_pid(line: str, phys: str) -> int | None:
    """`daemon` runs the VM under run_erl, which lives exactly as long as the VM does, and is
    there before the VM's own process is (a shell script and erlexec come first)."""
    proc, *argv = line.split("\x1f")
    pid = proc.removeprefix("/proc/").removesuffix("/cmdline")
    if phys and argv and pid.isdigit() and posixpath.basename(argv[0]) == "run_erl":
        return int(pid)
    return None


# What the VMs a release's script starts besides the release's own say they are for: `remote`
# (a console), `rpc` and `eval`. They also boot a clean boot script, not the release's.
_PROBE_FLAGS = frozenset({"-remsh", "--remsh", "--rpc-eval", "--eval"})
_CLEAN_BOOTS = frozenset({"start_clean", "no_dot_erlang"})


def _is_console_or_probe(argv: Sequence[str], boot: str | None) -> bool:
    return (
        boot is None
        or posixpath.basename(boot) in _CLEAN_BOOTS
        or any(arg in _PROBE_FLAGS for arg in argv)
    )


def parse_vm(line: str, phys: str) -> Vm | None:
    """A `vm=` line (`/proc/<pid>/cmdline` then argv, split by \\x1f) as a Vm, if it is the
    release's own BEAM started from `<phys>/releases/<dir>`: an operator's console or an
    rpc/eval VM run from the same release is not the release's VM."""
    proc, *argv = line.split("\x1f")
    pid = proc.removeprefix("/proc/").removesuffix("/cmdline")
    if not (pid.isdigit() and argv and phys):
        return None
    if not posixpath.basename(argv[0]).startswith("beam"):
        return None
    root, boot = _arg_after(argv, "-root"), _arg_after(argv, "-boot")
    if root is None or posixpath.dirname(root) != f"{phys}/releases":
        return None
    if _is_console_or_probe(argv, boot):
        return None
    version = posixpath.basename(root)
    if boot and boot.startswith(f"{root}/releases/"):
        version = posixpath.basename(posixpath.dirname(boot))  # the version it booted
    return Vm(int(pid), root, version)


def _arg_after(argv: Sequence[str], flag: str) -> str | None:
    for before, value in itertools.pairwise(argv):
        if before == flag:
            return value
    return None


# -- prepare -----------------------------------------------------------------------------------


# Uploads hold the release's COOKIE: only the deploy user may read them, or list the dir.
# (The umask comes after the mkdir: the deploy path and shared/ keep the user's own modes.)
PRIVATE_UPLOADS = 'mkdir -p "$U" "$P/shared" && chmod 700 "$U" || exit 3\numask 077\n'


# Measured before the partial goes: a disk it filled is full now, not after.
_SPACE_AND_REMOVE = (
    'echo "free_kb=$(df -Pk "$(dirname "$F")" 2>/dev/null | awk \'NR == 2 {print $4}\')"\n'
    'echo "partial=$(wc -c <"$F" 2>/dev/null)"\n'
    'rm -f "$F"\n'
)


def upload_state_script(layout: Layout, version: str, sha256: str) -> str:
    """Print `done` if the verified upload is there; drop a wrong one; print the partial size."""
    return (
        layout.prelude()
        + PRIVATE_UPLOADS
        + (
            f"F={q(layout.upload(version))}; SHA={q(sha256)}\n"
            'if [ -f "$F" ]; then\n'
            '  [ "$(sha256sum <"$F" | cut -c1-64)" = "$SHA" ] && chmod 600 "$F" && {\n'
            "    echo done; exit 0\n  }\n"
            '  rm -f "$F"\n'
            "fi\n"
            'if [ -f "$F.partial" ]; then echo "partial=$(wc -c <"$F.partial")"; fi\n'
        )
    )


def finish_upload_script(layout: Layout, version: str, sha256: str) -> str:
    """Hash the partial upload on the node: rename it if it matches, else delete it (exit 4)."""
    return layout.prelude() + (
        f"F={q(layout.upload(version))}; SHA={q(sha256)}\n"
        'got=$(sha256sum <"$F.partial" | cut -c1-64) || exit 3\n'
        'if [ "$got" = "$SHA" ]; then\n'
        '  chmod 600 "$F.partial" && mv -f "$F.partial" "$F" && exit 0; exit 3\nfi\n'
        'rm -f "$F.partial"; echo "$got"; exit 4\n'
    )


def fetch_script(layout: Layout, version: str, fetch: str) -> str:
    """Run the store's fetch command into the partial upload (pull mode); finish_upload checks it.

    `fetch` is built by a store adapter with every value quoted, never from user input.
    """
    return (
        layout.prelude()
        + PRIVATE_UPLOADS
        + (
            f"F={q(layout.upload(version))}\n"
            f'{{ {fetch}\n}} >"$F.partial" || {{\n'
            '  F="$F.partial"\n'
            + _SPACE_AND_REMOVE
            + '  echo "fetching the release from the store failed" >&2\n'
            "  exit 7\n}\n"
        )
    )


@dataclass(frozen=True)
class UploadSpace:
    """After a failed upload: the free bytes where it went, and how far it had got."""

    free_bytes: int
    partial_bytes: int


def failed_upload_script(partial: str) -> str:
    """Print the free space beside `partial` and its size, then remove it."""
    return f"F={q(partial)}\n" + _SPACE_AND_REMOVE


def parse_failed_upload(output: str) -> UploadSpace | None:
    fields = dict(line.partition("=")[::2] for line in output.splitlines())
    free, partial = fields.get("free_kb", "").strip(), fields.get("partial", "").strip() or "0"
    if not (free.isdigit() and partial.isdigit()):
        return None
    return UploadSpace(int(free) * 1024, int(partial))


# -- install -----------------------------------------------------------------------------------


def install_state_script(layout: Layout, version: str) -> str:
    """`installed`, `missing` (no verified upload), `streamed` then the `LISTING` kept when the
    upload was unpacked as it came (see `stream_install`), or `listing` then its `LISTING`."""
    return layout.prelude() + (
        f"V={q(checked_version(version))}; F={q(layout.upload(version))}\n"
        'if complete "$V"; then echo installed; exit 0; fi\n'
        'if [ ! -f "$F" ]; then echo missing; exit 0; fi\n'
        'if [ -d "$R/.$V.partial" ] && [ -f "$F.listing" ]; then\n'
        '  echo streamed; cat "$F.listing" && exit 0; exit 5\nfi\n'
        f'echo listing; {LISTING} "$F" || exit 5\n'
    )


def listing_script(upload: str) -> str:
    """The `LISTING` of an uploaded archive (exit 5: not a readable gzipped tar)."""
    return f"{LISTING} {q(upload)} || exit 5\n"


def remove_upload_script(upload: str, unpacked: str | None = None) -> str:
    """Delete a refused upload, any partial of it and its listing, and the dir it was unpacked
    into as it came (`unpacked`): it must not be installed later."""
    files = " ".join(q(upload + suffix) for suffix in ("", ".partial", ".listing"))
    return f"rm -f {files}\n" + (f"rm -rf {q(unpacked)}\n" if unpacked else "")


def private_cookies(root: str) -> str:
    """Make the COOKIE files of the release root `root` (a shell word) unreadable to others:
    the cookie lets whoever reads it run code in the VM as the deploy user."""
    return (
        f"for c in {root}/releases/COOKIE {root}/releases/*/COOKIE; do\n"
        '  if [ -f "$c" ]; then chmod go-rwx "$c" || exit 3; fi\ndone\n'
    )


def unpack_script(layout: Layout, version: str) -> str:
    """Unpack into releases/.<v>.partial, check it is that release, rename it into place."""
    return layout.prelude() + (
        f"V={q(checked_version(version))}; F={q(layout.upload(version))}\n"
        'T="$R/.$V.partial"; D="$R/$V"\n'
        'rm -rf "$T" && mkdir -p "$T" || exit 3\n'
        'tar -xzf "$F" -C "$T" --no-same-owner >&2 || { rm -rf "$T"; exit 5; }\n' + _PLACE
    )


def place_script(layout: Layout, version: str) -> str:
    """Check that releases/.<v>.partial, unpacked as the upload came, is that release, and
    rename it into place; its listing, read once the deployer found it safe, goes."""
    return layout.prelude() + (
        f"V={q(checked_version(version))}; F={q(layout.upload(version))}\n"
        'T="$R/.$V.partial"; D="$R/$V"\n'
        '[ -d "$T" ] || { echo "releases/.$V.partial is gone: install again" >&2; exit 5; }\n'
        + _PLACE
        + 'rm -f "$F.listing"\n'
    )


# The end of an install: $T is release $V of $APP, its cookies private, renamed to $D.
_PLACE = (
    'if [ ! -f "$T/bin/$APP" ] || [ ! -d "$T/releases/$V" ]; then\n'
    '  rm -rf "$T"; echo "not a release of $APP $V: no bin/$APP or releases/$V" >&2; exit 6\n'
    "fi\n" + private_cookies('"$T"') + 'touch "$T" && rm -rf "$D" && mv -T "$T" "$D" || exit 3\n'
)


# -- activate, roll back, verify ---------------------------------------------------------------


@dataclass(frozen=True)
class Switch:
    """One run of the lifecycle script: stop `stop`, point current at `to` and start it."""

    stop: tuple[Vm, ...] = ()
    to: str | None = None  # None: remove current, start nothing
    start: bool = True
    record: tuple[str, str, str, str] | None = None  # step, version, previous, sha256
    remove: tuple[str, ...] = ()  # versions whose release dir, partial and upload go
    launchers: tuple[int, ...] = ()  # run_erl pids of VMs that may still be booting
    back: str | None = None  # the version a rollback will switch back to: its link made now
    getting_back: bool = False  # a rollback: it must work on a full disk


# Seconds a VM has to go once sent SIGTERM (a BEAM then runs init:stop), before SIGKILL.
TERM_GRACE = 10.0


def _tenths(seconds: float) -> int:
    return max(1, round(seconds * 10))


# Sleeps growing from 10 ms to 0.5 s: a poll answers fast when the wait is short, and costs
# little when it is long. `naps=0` starts a new wait.
_NAP = r"""
nap() {
  case ${naps:-0} in
    0) sleep 0.01 ;; 1) sleep 0.02 ;; 2) sleep 0.05 ;; 3) sleep 0.1 ;; 4) sleep 0.2 ;;
    *) sleep 0.5 ;;
  esac
  naps=$((${naps:-0} + 1))
}
"""


def _stop_vm_body(commands: ReleaseCommands, stop_seconds: float) -> str:
    """With no stop command, SIGTERM and the stop timeout; else the command, and signals only
    when it cannot reach the VM (one still booting, its distribution down) or it stays."""
    if commands.stops_by_signal:
        return f'  stop_by_signal "$1" {_tenths(stop_seconds)} && return 0\n'
    return (
        '  if [ -d "$2" ] && (cd "$2" && stop_command) >>"$S/start.log" 2>&1 </dev/null; then\n'
        f'    gone_within "$1" {_tenths(stop_seconds)} && return 0\n'
        "  fi\n"
        '  terminate "$1" && return 0\n'
    )


def _lifecycle_functions(layout: Layout, commands: ReleaseCommands, stop_seconds: float) -> str:
    return (
        commands.functions(layout.app)
        + f"""
alive() {{ [ -n "$PHYS" ] && grep -q -a -F -e "$PHYS/releases/" "/proc/$1/cmdline" 2>/dev/null; }}
{_NAP.strip()}
gone_within() {{  # pid tenths-of-seconds (at least): looked at often at first, then less
  end=$(($(date +%s) + ($2 + 9) / 10 + 1)); naps=0
  while alive "$1"; do [ "$(date +%s)" -ge "$end" ] && return 1; nap; done
}}
terminate() {{  # pid: TERM (a BEAM stops cleanly, even while booting), then KILL
  kill -TERM $(tree "$1") 2>/dev/null; gone_within "$1" {_tenths(TERM_GRACE)} && return 0
  kill -KILL $(tree "$1") 2>/dev/null; gone_within "$1" 50
}}
stop_by_signal() {{  # pid tenths: TERM to the VM alone (its init:stop ends its children), then KILL
  kill -TERM "$1" 2>/dev/null; gone_within "$1" "$2" && return 0
  kill -KILL $(tree "$1") 2>/dev/null; gone_within "$1" 50
}}
tree() {{ roots=$1; cat /proc/[0-9]*/stat 2>/dev/null | {_TREE.strip()}; }}
stop_vm() {{  # pid root: by the stop command from the VM's own root while it answers, or signals
  alive "$1" || return 0
{_stop_vm_body(commands, stop_seconds)}  echo "could not stop the VM $1 running from $2" >&2; exit 4
}}
stop_launcher() {{  # run_erl pid: its VM may still be booting, unreachable by the stop command
  alive "$1" || return 0
  terminate "$1" && return 0
  echo "could not stop the release started by run_erl $1" >&2; exit 4
}}
start_current() {{
  (cd "$P/current" && start_command) >>"$S/start.log" 2>&1 </dev/null && return 0
  echo "the start command failed; .edeliver/start.log ends:" >&2
  tail -n 20 "$S/start.log" >&2; exit 5
}}
prepare_record() {{  # step version previous sha256: written now, renamed into place after
  printf 'step=%s\\nversion=%s\\nprevious=%s\\nsha256=%s\\nat=%s\\n' "$1" "$2" "$3" "$4" \\
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$S/last.new"
}}
cannot_write() {{ echo "cannot write .edeliver/$1 (is the disk full?)" >&2; exit 3; }}
going_without() {{ echo "could not write .edeliver/$1; going on without it" >&2; }}
prepare_link() {{  # version: current.new -> releases/$1; on a full disk, the link back
  if [ "$(readlink "$P/current" 2>/dev/null)" = "releases/$1" ]; then rm -f "$S/current.new"
  elif ! ln -sfn "releases/$1" "$S/current.new" 2>/dev/null; then
    [ "$(readlink "$S/current.back" 2>/dev/null)" = "releases/$1" ] &&
      mv -fT "$S/current.back" "$S/current.new"
  fi
}}
discard() {{  # dir: renamed aside at once, then deleted; a leftover is deleted next time
  [ -e "$1" ] || return 0
  t="$R/.trash.$$.$(date +%s%N)"; mv -fT "$1" "$t" 2>/dev/null || t=$1
  for try in 1 2 3; do rm -rf "$t" 2>/dev/null && return 0; sleep 0.2; done
  echo "left $t to delete next time" >&2
}}
"""
    )


def switch_script(
    layout: Layout,
    commands: ReleaseCommands,
    switch: Switch,
    stop_seconds: float = 30.0,
    generation: int | None = None,
) -> str:
    """Prepare everything the switch needs, then stop, switch current (or remove it), start,
    record, remove: each part skipped when done. With a `generation`, every part that stops,
    records, switches, removes or starts runs only while the node's lock is held at it.

    What needs disk space (the new `current` link, the link back, the `last` record, the start
    log's header) is written before any VM is stopped, so a full disk fails an activation with
    the old VM running; a rollback needs no space at all (it falls back on the link back that
    its activation prepared, and its record is best effort). After the stop, only renames."""
    lines = [layout.prelude() + _lifecycle_functions(layout, commands, stop_seconds)]
    lines.append(generation_guard(generation))
    lines += _prepare_switch(switch)
    if switch.to is not None:  # a link through `current`: made before anything stops
        lines.append(legacy_bin_link())
    lines += [f"guarded stop_vm {vm.pid} {q(vm.root)} || exit $?" for vm in switch.stop]
    lines += [f"guarded stop_launcher {pid} || exit $?" for pid in switch.launchers]
    if switch.record:  # before current moves, so that a re-run knows what it switched from
        lines.append('guarded mv -f "$S/last.new" "$S/last" 2>/dev/null')
    if switch.to is None:
        lines.append('guarded rm -f "$P/current" || exit 3')
    else:
        lines.append(
            'if [ -L "$S/current.new" ]; then guarded mv -fT "$S/current.new" "$P/current"; fi'
        )
        lines.append('[ "$(readlink "$P/current")" = "releases/"' + q(switch.to) + " ] || exit 3")
        lines.append(f'touch "$R/"{q(switch.to)} 2>/dev/null')  # newest first, for housekeeping
    # Before the start: what goes frees space for the VM that boots (no VM runs from it).
    lines.append('for t in "$R"/.trash.*; do guarded discard "$t"; done')
    for version in switch.remove:
        upload = q(layout.upload_name(version))
        partial = q(f".{version}.partial")
        lines.append(f'guarded discard "$R/"{q(version)}; guarded discard "$R/"{partial}')
        lines.append(f'guarded rm -f "$U/"{upload} "$U/"{upload}.partial "$U/"{upload}.listing')
    if switch.to is not None and switch.start:
        lines.append("guarded start_current || exit $?")
    return "\n".join(lines) + "\n"


def legacy_bin_link() -> str:
    """`<path>/bin/<app>`, where edeliver 1.x kept the release's script, as a link to
    `current`'s: 1.x hooks and scripts calling `$DELIVER_TO/$APP/bin/$APP` reach the running
    release. Absolute, so that the script finds its root through `current` (it resolves only
    its own link, then `..`); made once, never over a file of the user's; best effort."""
    return (
        '[ -e "$P/bin/$APP" ] || [ -L "$P/bin/$APP" ] || '
        '{ mkdir -p "$P/bin" && ln -s "$P/current/bin/$APP" "$P/bin/$APP"; } 2>/dev/null'
    )


def _prepare_switch(switch: Switch) -> list[str]:
    """Checks and writes that can fail (a missing release, a full disk) while nothing stopped;
    when getting back, a write that fails for lack of space is done without."""
    lacking = "going_without" if switch.getting_back else "cannot_write"
    lines = ['mkdir -p "$S" || exit 3']
    if switch.to is not None:
        to = q(checked_version(switch.to))
        missing = f'{{ echo "release "{to}" is not on the node" >&2; exit 3; }}'
        lines.append(f"complete {to} || {missing}")
        lines.append(f"prepare_link {to} || cannot_write current.new")
        if switch.start:
            header = f"--- start releases/{switch.to} $(date -u +%Y-%m-%dT%H:%M:%SZ)"
            lines.append(f'echo "{header}" >>"$S/start.log" || {lacking} start.log')
    if switch.back is not None:
        back = q(checked_version(switch.back))
        lines.append(f'ln -sfn "releases/"{back} "$S/current.back" || cannot_write current.back')
    if switch.record:
        record = " ".join(q(v) for v in switch.record)
        lines.append(f'prepare_record {record} || {{ rm -f "$S/last.new"; {lacking} last.new; }}')
    return lines


@dataclass(frozen=True)
class Health:
    """One health poll: the release's VMs, where current points, what the health command said
    and, when it says so (the default rpc does), which VM answered it."""

    vms: tuple[Vm, ...]
    current: str | None
    code: int
    said: str
    launching: bool
    answered_by: tuple[int, int] | None = None  # the answering VM's pid and root inode
    root_inodes: Mapping[str, int] = field(default_factory=dict)  # release dir -> inode

    @property
    def running(self) -> tuple[str, ...]:
        return tuple(vm.version for vm in self.vms)

    def answered_by_another_vm(self) -> str | None:
        """Why the answer cannot be this node's release VM's, or None when it is (or when the
        health command does not say who answered)."""
        if self.answered_by is None:
            return None
        pid, inode = self.answered_by
        if any(vm.pid == pid and self.root_inodes.get(vm.root_name) == inode for vm in self.vms):
            return None
        ours = ", ".join(str(vm.pid) for vm in self.vms) or "none"
        return f"answered by a VM that is not this node's release VM (pid {pid}; ours: {ours})"


_READY = r"""
node_name() { node_arg "$1" | sed 's/^[^ ]* //; s/@.*//'; }
registered() {  # name: epmd lists it, or no epmd answers (then there is nothing to wait for)
  e=$(ls "$P/current"/erts-*/bin/epmd 2>/dev/null | head -n 1); [ -n "$e" ] || e=epmd
  names=$("$e" -names 2>/dev/null) || return 0
  case "$names" in *"name $1 at port "*) return 0 ;; esac; return 1
}
ready_within() {  # seconds: wait while our VM is launched but not yet registered with epmd
  end=$(($(date +%s) + $1)); naps=0
  while :; do
    running=$(vms)
    case "$running" in
      *beam.smp*)
        name=$(node_name "$running"); [ -z "$name" ] || registered "$name" && return ;;
      *run_erl*) ;;
      *) return ;;
    esac
    [ "$(date +%s)" -lt "$end" ] || return
    nap
  done
}
"""


def health_script(layout: Layout, commands: ReleaseCommands, wait: float = 0) -> str:
    """The running VMs and current (as in the probe), the inodes of the release roots, then the
    health command's exit code and last lines. The command runs once, after waiting up to
    `wait` seconds for a launched VM to register with epmd: before that an `rpc` cannot reach
    it, and each try would boot a VM for nothing."""
    return (
        layout.prelude()
        + commands.functions(layout.app)
        + _VMS
        + _NAP
        + VM_CALLS
        + VM_HEALTH
        + _READY
        + (
            f"ready_within {max(0, int(wait))}\n"
            'echo "phys=$PHYS"\necho "current=$(readlink "$P/current" 2>/dev/null)"\n'
            'for d in "$R"/*; do [ -d "$d" ] && echo "root_ino=$(stat -c %i "$d") ${d##*/}"; done\n'
            '[ -z "$running" ] || printf \'%s\\n\' "$running"\n'
            # With no VM yet, a health command such as `rpc` would only boot a VM for nothing.
            # (`vms` may also list its own short-lived grep, hence the look for a VM's name.)
            'case "$running" in\n'
            "  *beam.smp*|*run_erl*)\n"
            '    out=$(cd "$P/current" 2>&1 && health_command 2>&1 </dev/null); rc=$? ;;\n'
            '  *) out="no VM runs yet"; rc=1 ;;\nesac\n'
            "printf '%s\\n' \"$out\" | tail -n 5 | sed 's/^/health=/'\n"
            'echo "health_rc=$rc"\n'
        )
    )


def parse_health(output: str) -> Health:
    state = parse_probe(output)
    said, code, answered_by, inodes = [], 1, None, {}
    for line in output.splitlines():
        key, _, value = line.partition("=")
        if key == "health":
            said.append(value)
            answered_by = _identity(value) or answered_by
        elif key == "health_rc" and value.isdigit():
            code = int(value)
        elif key == "root_ino" and (inode := value.partition(" "))[0].isdigit():
            inodes[inode[2]] = int(inode[0])
    current = state.facts.current_version
    return Health(state.vms, current, code, "\n".join(said), state.launching, answered_by, inodes)


def _identity(said: str) -> tuple[int, int] | None:
    """(pid, root inode) from an `edeliver_vm=<pid> <inode>` line (see RPC_IDENTITY)."""
    match = re.fullmatch(r"edeliver_vm=(\d+) (\d+)", said.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _exports(env: Mapping[str, str]) -> str:
    bad = [name for name in env if not ENV_NAME.match(name)]
    if bad:
        raise ValueError(f"not an environment variable name: {bad[0]!r}")
    return "".join(f"export {name}={q(value)}\n" for name, value in env.items())


def task_script(path: str, env: Mapping[str, str], script: str) -> str:
    """Run a task's script from the deploy path (made if missing) with its interpreter, the
    app's runtime settings and its environment exported, and stderr merged into stdout, so
    its output reads in order."""
    argv = " ".join(q(arg) for arg in interpreter(script))
    return (
        f"mkdir -p {q(path)} && cd {q(path)} || exit 97\nP={q(path)}\n{SOURCE_RUNTIME_ENV}"
        f"{_exports(env)}"
        f"exec {argv} -c {q(script)} edeliver-task 2>&1\n"
    )


def eval_script(layout: Layout, version: str, code: str, env: Mapping[str, str]) -> str:
    """Evaluate Elixir code with an installed release's `bin/<app> eval`, from its root."""
    return (
        f"{layout.prelude()}V={q(checked_version(version))}\n"
        'complete "$V" || { echo "release $V is not installed on this node"; exit 98; }\n'
        f'cd "$R/$V" || exit 97\n{_exports(env)}'
        f'exec bin/"$APP" eval {q(code)} 2>&1\n'
    )


RELEASE_COMMANDS = ("eval", "rpc")


def release_command_script(layout: Layout, command: str, code: str) -> str:
    """`bin/<app> eval` (a new VM with the release's code) or `rpc` (in the running VM) of
    `code`, from the release current points to; stderr after stdout."""
    if command not in RELEASE_COMMANDS:
        raise ValueError(f"not a release command: {command!r}")
    return layout.prelude() + (
        '[ -d "$P/current/bin" ] || { echo "no release is current under $P"; exit 98; }\n'
        f'cd "$P/current" || exit 97\nexec bin/"$APP" {command} {q(code)} 2>&1\n'
    )


def remote_console_command(layout: Layout) -> str:
    """The command line (not a script: the terminal is its stdin) that opens `bin/<app>
    remote` from the current release; quoted the same in any login shell."""
    start = 'cd "$1/current" && exec bin/"$2" remote'
    return f"sh -c {q(start)} edeliver-console {q(layout.path)} {q(layout.app)}"


def boot_version_script(layout: Layout) -> str:
    """The version a start of `current` boots: the permanent one of its `start_erl.data`
    (after a hot upgrade, not the version the root was unpacked as)."""
    return (
        layout.prelude()
        + 'sed -n "s/^[^ ]* //p" "$P/current/releases/start_erl.data" 2>/dev/null\n'
    )


FOLLOWING = "edeliver-following"  # said by `release_log_script` just before it starts following


def release_log_script(layout: Layout, lines: int, follow: bool) -> str:
    """The last `lines` lines of the newest `erlang.log.N` of the current release (where
    run_erl writes the VM's console output). With `follow`, says FOLLOWING on a line of its
    own, then follows it and, once a newer file is written (run_erl rotated its log, or a
    deployment started another release), that one from its start."""
    n = int(lines)
    start = (
        'd="$P/current/tmp/log"\n'
        'newest() { ls -t "$d"/erlang.log.* 2>/dev/null | head -n 1; }\n'
        "f=$(newest)\n"
        '[ -n "$f" ] || { echo "no erlang.log.* under $d: no release started there" >&2; '
        "exit 3; }\n"
    )
    if not follow:
        return layout.prelude() + start + f'exec tail -n {n} "$f"\n'
    return (
        layout.prelude()
        + start
        + (
            f'echo {FOLLOWING}\ntail -n {n} -F "$f" & t=$!\n'
            "while sleep 1; do\n"
            '  g=$(newest); [ -n "$g" ] && [ "$g" != "$f" ] || continue\n'
            '  kill "$t" 2>/dev/null; f=$g; tail -n +1 -F "$f" & t=$!\n'
            "done\n"
        )
    )


def log_tail_script(layout: Layout, lines: int = 30) -> str:
    """The end of the newest `erlang.log.*` of the release current points to."""
    return layout.prelude() + (
        'f=$(ls -t "$P/current/tmp/log"/erlang.log.* 2>/dev/null | head -n 1)\n'
        f'if [ -n "$f" ]; then echo "$f:"; tail -n {int(lines)} "$f"; fi\n'
    )


def prune(releases_newest_first: Sequence[str], keep: int, protected: Collection[str]) -> list[str]:
    """The releases to delete: all but the `keep` newest, never a protected one."""
    return [r for i, r in enumerate(releases_newest_first) if i >= keep and r not in protected]
