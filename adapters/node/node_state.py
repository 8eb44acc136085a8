"""The node state probe and its parser: what a node has (platform, free disk, releases,
`current`, the last record) and which VMs of ours run there.

The running version is read from `/proc/<pid>/cmdline` of the BEAM VM (`beam.smp ... -root
<release root> ... -boot <root>/releases/<vsn>/start`): no second VM is started, and since the
mix release scripts resolve their root with `pwd -P`, `-root` is the physical release dir, not
`current`. `/proc` is Linux-only; elsewhere no VM is ever seen running.
"""

from __future__ import annotations

import itertools
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from edeliver.adapters.node.node_scripts import Layout
from edeliver.core.domain.model import NodeFacts, Platform

q = shlex.quote


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
    # Per upload path the probe was asked about: `kept`, `partial` or `none` (`upload_report`).
    uploads: dict[str, str] = field(default_factory=dict)
    # Path prefixes under which the probe named every upload (`uploads_under`): others, none.
    listed: tuple[str, ...] = ()

    def upload_state(self, path: str) -> str | None:
        """`kept`, `partial` or `none` at the upload path `path`; None: not looked at."""
        if path in self.uploads:
            return self.uploads[path]
        return "none" if any(path.startswith(prefix) for prefix in self.listed) else None

    @property
    def running(self) -> tuple[str, ...]:
        return tuple(vm.version for vm in self.vms)

    @property
    def launching(self) -> bool:
        return bool(self.launchers)


# Prints a `vm=` line per process started from a release of the deploy path (its cmdline).
VMS = r"""
vms() {
  [ -n "$PHYS" ] || return 0
  for f in $(grep -a -l -F -e "$PHYS/releases/" /proc/[0-9]*/cmdline 2>/dev/null); do
    printf 'vm=%s\037' "$f"; tr '\0\n' '\037 ' 2>/dev/null <"$f"; echo
  done
}
"""


# The probe after a script's prelude (whose `P`, `R`, `S`, `PHYS` and `complete` it reads): an
# install ends with it too, so that its activation needs no probe of its own. Each process it
# starts costs the node ~1 ms of CPU: `ldd` (a bash script) only where getconf names no glibc,
# the free space and the last record read by the shell's `read`.
STATE_REPORT = (
    VMS
    + r"""
os_arch=$(uname -sm); echo "os=${os_arch% *}"; echo "arch=${os_arch#* }"
libc=$(getconf GNU_LIBC_VERSION 2>/dev/null); echo "getconf=$libc"
case $libc in glibc*) ;; *) echo "ldd=$(ldd --version 2>&1 | head -n 2 | tr '\n' ' ')" ;; esac
d=$P; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
df -Pk "$d" 2>/dev/null | { read -r x; read -r x x x kb x; echo "free_kb=${kb-}"; }
echo "current=$(readlink "$P/current" 2>/dev/null)"
echo "phys=$PHYS"
if [ -d "$R" ]; then
  ls -1t "$R" | while IFS= read -r n; do if complete "$n"; then echo "release=$n"; fi; done
fi
if [ -f "$S/last" ]; then
  while IFS= read -r l || [ -n "$l" ]; do echo "last.$l"; done <"$S/last"
fi
running=$(vms); [ -z "$running" ] || printf '%s\n' "$running"
"""
)


def probe_script(layout: Layout, upload: str | None = None) -> str:
    """Platform, free disk, current, complete releases (newest first), last record, VMs; and
    what is at the path `upload` (a release's upload), when given."""
    return layout.prelude() + STATE_REPORT + (upload_report(upload) if upload else "")


def upload_report(upload: str) -> str:
    """`upload=<path> kept|partial|none`: what a prepare would find there, read only (the
    prepare's own script verifies a kept upload, drops a wrong one and resumes a partial)."""
    return (
        f"F={q(upload)}\n"
        'if [ -f "$F" ]; then u=kept; elif [ -f "$F.partial" ]; then u=partial; else u=none; fi\n'
        'printf \'upload=%s %s\\n\' "$F" "$u"\n'
    )


def uploads_under(prefix: str) -> str:
    """`upload=<path> kept|partial` for every upload whose path starts with `prefix` (a
    shell word), then `uploads_under=<prefix>`: what a prepare would find at any such path, read
    only, when the exact path is not known yet (a hot upgrade's package, named by the version
    the node runs)."""
    return (
        f"for f in {prefix}*.tar.gz {prefix}*.tar.gz.partial; do\n"
        "  case $f in *.partial) u=partial ;; *) u=kept ;; esac\n"
        '  [ -f "$f" ] && printf \'upload=%s %s\\n\' "${f%.partial}" "$u"\n'
        f"done\nprintf 'uploads_under=%s\\n' {prefix}\n"
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
    seen = (line.rpartition(" ") for line in fields.get("upload", []))
    uploads = {path: what for path, _, what in seen}
    listed = tuple(fields.get("uploads_under", []))
    return NodeState(facts, vms, releases, last, launchers, uploads, listed)


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
