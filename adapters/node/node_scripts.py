"""What every node script shares: the node's layout, the shell the scripts run in, the way a
script cut short is stopped, and the release's start / stop / health commands.

The scripts themselves live beside this module, by what they are about: `node_state` (the probe
of what a node has and runs), `install_scripts` (upload, fetch, unpack, place), `switch_scripts`
(stop, switch `current`, start, record), `health_scripts` (is the new release up) and
`command_scripts` (tasks, eval / rpc, the console, logs). All are pure functions (no I/O), so
every script and parser is testable as a table. Layout on a node (DESIGN §6), `P` being the
node's deploy path:

    P/releases/<version>/              complete release roots, renamed into place once unpacked
    P/releases/.<version>.partial/     an unpack in progress: never booted, never listed
    P/current -> releases/<version>    switched by rename: `ln -sfn` to a temp link, `mv -T`
    P/shared/                          files that outlive releases
    P/.edeliver/uploads/<app>-<version>.tar.gz   verified uploads (`.partial` until verified)
    P/.edeliver/last                   the last activation or rollback: version, previous, time
    P/.edeliver/start.log              output of the start and stop commands

Every value put into a script goes through `shlex.quote`; scripts run under `sh`, never the
user's login shell (see `REMOTE_SH`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from edeliver.adapters.node.runtime_env_files import SOURCE_RUNTIME_ENV

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
PROCESS_TREE = r"""
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
  kill -KILL $(cat /proc/[0-9]*/stat 2>/dev/null | {PROCESS_TREE.strip()}) 2>/dev/null
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
            # The physical path, by the shell's own `cd -P` (a `$(...)` would be a process).
            "PHYS=; here=${PWD:-}\n"
            'if [ -n "$here" ] && cd -P "$P" 2>/dev/null; then\n'
            '  PHYS=$PWD; cd "$here" || exit 3\nfi\n'
            # A complete release of version $1: renamed into place with its boot files.
            'complete() { [ -d "$R/$1/bin" ] && [ -d "$R/$1/releases/$1" ]; }\n'
        )


def checked_version(version: str) -> str:
    if not VERSION.match(version):
        raise ValueError(f"version {version!r} is not usable as a directory name")
    return version


# Sleeps growing from 10 ms to 0.5 s: a poll answers fast when the wait is short, and costs
# little when it is long. `naps=0` starts a new wait.
NAP = r"""
nap() {
  case ${naps:-0} in
    0) sleep 0.01 ;; 1) sleep 0.02 ;; 2) sleep 0.05 ;; [3-9]|[1-3][0-9]) sleep 0.1 ;;
    *) sleep 0.5 ;;
  esac
  naps=$((${naps:-0} + 1))
}
late() {  # past $end (epoch s)? The clock is a process: read at the first nap and every 4th
  [ $((${naps:-0} % 4)) -eq 0 ] && [ "$(date +%s)" -ge "$end" ]
}
"""
