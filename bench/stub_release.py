"""A stub release for the race: a tarball that is a release of `hello` as Edeliver's node
scripts see it, whose start and health cost no CPU, so that what a deploy of it costs is the
deployer's own work and the round trips.

The tarball holds `bin/hello` and `releases/<version>/start.boot` (empty). `bin/hello daemon`
starts, detached, a bash whose argv[0] is `<root>/erts-stub/bin/beam.smp` and whose command line
names `-root <root> -boot <root>/releases/<version>/start`, as a BEAM's does, so the probe
(`node_state.parse_vm`) sees it as the release's VM running `<version>` and a deploy stops it by
SIGTERM like one. That bash writes `tmp/hello.status` (`pid=`, removed when it stops, as
examples/hello does) and waits on a `sleep`, killing it on SIGTERM. `bin/hello version` prints the
version the running stub booted, read from its command line.

The race's project runs it with `[commands]`: `start = "bin/{app} daemon"` (no epmd to start),
the default stop (SIGTERM) and the status file health check (`STATUS_FILE_HEALTH`: a `test` and a
`kill -0`, no VM to ask).
"""

from __future__ import annotations

import io
import json
import shlex
import tarfile
from pathlib import Path

from edeliver.adapters.node.node_scripts import STATUS_FILE_HEALTH

COMMANDS = f'[commands]\nstart = "bin/{{app}} daemon"\nhealth = {json.dumps(STATUS_FILE_HEALTH)}\n'

_BIN = r"""#!/bin/bash
# A stub release of hello (bench/stub_release.py): no VM, a bash that waits on a sleep.
V=__VERSION__
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
STATUS="$ROOT/tmp/hello.status"
stub_vm() {
  trap 'kill "$child" 2>/dev/null; rm -f "$STATUS"; exit 0' TERM
  sleep infinity & child=$!
  echo "pid=$$" >"$STATUS.new" && mv -f "$STATUS.new" "$STATUS"
  wait "$child"
}
case "$1" in
  daemon)
    mkdir -p "$ROOT/tmp"
    export -f stub_vm; export STATUS
    # setsid: a session of its own, as a daemon; exec -a: the argv[0] a BEAM has.
    (cd "$ROOT" && exec setsid bash -c 'exec -a "$0" bash -c stub_vm "$@"' \
      "$ROOT/erts-stub/bin/beam.smp" hello -root "$ROOT" -boot "$ROOT/releases/$V/start") \
      </dev/null >/dev/null 2>&1 &
    ;;
  version)
    pid=$(sed -n 's/^pid=//p' "$STATUS" 2>/dev/null) && [ -n "$pid" ] || exit 1
    tr '\0' '\n' <"/proc/$pid/cmdline" | sed -n '/^-boot$/{n;p;}' | xargs dirname | xargs basename
    ;;
  *) echo "usage: bin/hello daemon|version" >&2; exit 2 ;;
esac
"""


def stub_tarball(directory: Path, version: str) -> Path:
    """`<directory>/hello-stub-<version>.tar.gz`, written once."""
    target = directory / f"hello-stub-{version}.tar.gz"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as archive:
        for name in ("bin", "releases", f"releases/{version}"):
            _add(archive, name, None)
        _add(archive, "bin/hello", _BIN.replace("__VERSION__", version).encode(), 0o755)
        _add(archive, f"releases/{version}/start.boot", b"", 0o644)
    return target


def _add(archive: tarfile.TarFile, name: str, data: bytes | None, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = mode, 0
    if data is None:
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
    else:
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))


def node_side(path: str, version: str) -> str:
    """The stub's node-side work for the script and Ansible: unpack, switch, stop the old stub by
    SIGTERM and wait for it, start the new one, check its status file."""
    return f"""set -e
P={shlex.quote(path)}; V={version}
rm -rf "$P/releases/$V"; mkdir -p "$P/releases/$V"
tar -xzf "$P/hello-$V.tar.gz" -C "$P/releases/$V"
old=$(sed -n 's/^pid=//p' "$P/current/tmp/hello.status" 2>/dev/null || true)
ln -sfn "releases/$V" "$P/current.new" && mv -fT "$P/current.new" "$P/current"
if [ -n "$old" ]; then kill -TERM $old; while kill -0 $old 2>/dev/null; do sleep 0.05; done; fi
cd "$P/current"; bin/hello daemon
n=0; until [ -f tmp/hello.status ] && kill -0 "$(sed -n 's/^pid=//p' tmp/hello.status)"; do
  n=$((n + 1)); [ "$n" -le 600 ] || {{ echo "not started" >&2; exit 1; }}; sleep 0.05
done
"""
