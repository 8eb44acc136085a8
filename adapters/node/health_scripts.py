"""One health poll of a node: its release VMs, where `current` points, and what the health
command said, once a launched VM is registered with epmd (waited for on the node).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from edeliver.adapters.node.node_scripts import NAP, Layout, ReleaseCommands
from edeliver.adapters.node.node_state import VMS, Vm, parse_probe
from edeliver.adapters.node.vm_calls import VM_CALLS, VM_HEALTH


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
registered() {  # name: epmd lists it, or no epmd answers (then there is nothing to wait for)
  names=$("$epmd_bin" -names 2>/dev/null) || return 0
  case "$names" in *"name $1 at port "*) return 0 ;; esac; return 1
}
ready_within() {  # seconds: wait while our VM is launched but not yet registered with epmd
  end=$(($(date +%s) + $1)); naps=0
  epmd_bin=epmd
  for f in "$P/current"/erts-*/bin/epmd; do [ -x "$f" ] && { epmd_bin=$f; break; }; done
  while :; do
    running=$(vms)
    case "$running" in
      *beam.smp*)  # then only epmd is asked, while that VM lasts (polls cost no scan)
        release_vm "$running"; name=${arg#* }; name=${name%%@*}; pid=$vm_pid
        [ -n "$arg" ] || return
        while [ -d "/proc/$pid" ]; do
          registered "$name" && return
          late && return
          nap
        done ;;
      *run_erl*) ;;
      *) return ;;
    esac
    late && return
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
        + VMS
        + NAP
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
