"""The lifecycle script: stop the VMs, switch `current` (or remove it), start, record, remove
old releases; each part skipped when done and, under a node lock, run only while it is held.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from edeliver.adapters.node.node_lock import generation_guard
from edeliver.adapters.node.node_scripts import (
    NAP,
    PROCESS_TREE,
    Layout,
    ReleaseCommands,
    checked_version,
    q,
)
from edeliver.adapters.node.node_state import NodeState, Vm


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


STALE = 75  # the exit status of a switch whose node no longer shows the state it was planned from

# What `Unchanged` compares, read as the probe reads it (`node_state`): where current points,
# the complete releases newest first, and the pids of the release's VMs and launchers (any
# BEAM or run_erl started from a release: a console VM too, which the probe leaves out, so
# that one running makes the check fail, never pass wrongly).
_SEEN = r"""
seen_current() { c=$(readlink "$P/current" 2>/dev/null); c=${c%/}; echo "${c##*/}"; }
seen_releases() {
  [ -d "$R" ] || return 0
  ls -1t "$R" | while IFS= read -r n; do if complete "$n"; then echo "$n"; fi; done
}
seen_pids() {
  [ -n "$PHYS" ] || return 0
  for f in $(grep -a -l -F -e "$PHYS/releases/" /proc/[0-9]*/cmdline 2>/dev/null); do
    a0=$(tr '\000' '\n' <"$f" 2>/dev/null | head -n 1)
    case "${a0##*/}" in beam*|run_erl) p=${f#/proc/}; echo "${p%/cmdline}" ;; esac
  done | sort -n
}
"""


@dataclass(frozen=True)
class Unchanged:
    """The node state a switch was planned from, read by an earlier script (the install's):
    the switch runs only if the node still shows it, else exits STALE having changed nothing,
    for the deployer to read the state again and plan anew."""

    current: str | None
    releases_by_age: tuple[str, ...]
    pids: tuple[int, ...]

    @classmethod
    def of(cls, state: NodeState) -> Unchanged:
        pids = sorted((*(vm.pid for vm in state.vms), *state.launchers))
        return cls(state.facts.current_version, state.releases_by_age, tuple(pids))

    def check(self) -> str:
        releases, pids = "\n".join(self.releases_by_age), " ".join(map(str, self.pids))
        return _SEEN + (
            f'if [ "$(seen_current)" != {q(self.current or "")} ] || '
            f'[ "$(seen_releases)" != {q(releases)} ] || [ "$(echo $(seen_pids))" != {q(pids)} ]; '
            "then\n"
            f'  echo "the node changed since its state was read" >&2; exit {STALE}\nfi\n'
        )


# Seconds a VM has to go once sent SIGTERM (a BEAM then runs init:stop), before SIGKILL.
TERM_GRACE = 10.0


def _tenths(seconds: float) -> int:
    return max(1, round(seconds * 10))


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
{NAP.strip()}
born() {{  # pid: b = its start time (stat's 22nd field), read by builtins only: no process
  read -r st 2>/dev/null <"/proc/$1/stat" || return 1
  set -- ${{st##*) }}; [ "$1" != Z ] || return 1  # a zombie has ended
  shift 19; b=$1
}}
gone_within() {{  # pid tenths-of-seconds (at least): looked at often at first, then less
  end=$(($(date +%s) + ($2 + 9) / 10 + 1)); naps=0
  alive "$1" && born "$1" || return 0; was=$b  # then: the same process, while it lasts
  while born "$1" && [ "$b" = "$was" ]; do late && return 1; nap; done
}}
terminate() {{  # pid: TERM (a BEAM stops cleanly, even while booting), then KILL
  kill -TERM $(tree "$1") 2>/dev/null; gone_within "$1" {_tenths(TERM_GRACE)} && return 0
  kill -KILL $(tree "$1") 2>/dev/null; gone_within "$1" 50
}}
stop_by_signal() {{  # pid tenths: TERM to the VM alone (its init:stop ends its children), then KILL
  kill -TERM "$1" 2>/dev/null; gone_within "$1" "$2" && return 0
  kill -KILL $(tree "$1") 2>/dev/null; gone_within "$1" 50
}}
tree() {{ roots=$1; cat /proc/[0-9]*/stat 2>/dev/null | {PROCESS_TREE.strip()}; }}
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
    unchanged: Unchanged | None = None,
) -> str:
    """Prepare everything the switch needs, then stop, switch current (or remove it), start,
    record, remove: each part skipped when done. With a `generation`, every part that stops,
    records, switches, removes or starts runs only while the node's lock is held at it. With
    `unchanged`, nothing is done (exit STALE) unless the node still shows that state.

    What needs disk space (the new `current` link, the link back, the `last` record, the start
    log's header) is written before any VM is stopped, so a full disk fails an activation with
    the old VM running; a rollback needs no space at all (it falls back on the link back that
    its activation prepared, and its record is best effort). After the stop, only renames."""
    lines = [layout.prelude() + _lifecycle_functions(layout, commands, stop_seconds)]
    lines.append(generation_guard(generation))
    if unchanged is not None:
        lines.append(unchanged.check())
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


def prune(releases_newest_first: Sequence[str], keep: int, protected: Collection[str]) -> list[str]:
    """The releases to delete: all but the `keep` newest, never a protected one."""
    return [r for i, r in enumerate(releases_newest_first) if i >= keep and r not in protected]
