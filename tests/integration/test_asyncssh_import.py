"""asyncssh imported after `edeliver.adapters` starts no process to look for liboqs or nettle
(ldconfig, gcc, ld): each fresh interpreter is asked which processes its import started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edeliver.adapters.asyncssh_import import find_in, library_dirs

RECORDED = """
import json, subprocess, sys
started = []
original = subprocess.Popen.__init__
def recorded(self, args, *rest, **options):
    started.append(args if isinstance(args, str) else " ".join(map(str, args)))
    return original(self, args, *rest, **options)
subprocess.Popen.__init__ = recorded
if sys.argv[1] == "edeliver":
    import edeliver.adapters
import asyncssh
print(json.dumps(started))
"""


def processes_started_importing(first: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", RECORDED, first], capture_output=True, text=True, check=True
    )
    started: list[str] = json.loads(done.stdout)
    return started


def test_asyncssh_after_the_adapters_starts_no_process_where_alone_it_starts_some() -> None:
    """Alone, asyncssh's import runs ldconfig (and gcc) for liboqs and nettle; after
    `edeliver.adapters` it runs nothing, and asyncssh still imports whole."""
    assert any("ldconfig" in command for command in processes_started_importing("alone"))
    assert processes_started_importing("edeliver") == []


def test_a_library_is_found_where_the_loader_looks_its_soname_first(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for directory in (first, second):
        directory.mkdir()
    for name in ("liboqs.so", "liboqs.so.5", "liboqs.so.0.9.0", "libnettle.so.8.6"):
        (second / name).write_text("")
    assert find_in([str(first), str(second)], "oqs") == str(second / "liboqs.so.5")
    assert find_in([str(first), str(second)], "liboqs") == str(second / "liboqs.so.5")
    assert find_in([str(second)], "nettle") == str(second / "libnettle.so.8.6")
    (first / "liboqs.so.6").write_text("")
    assert find_in([str(first), str(second)], "oqs") == str(first / "liboqs.so.6")
    assert find_in([str(tmp_path / "none")], "oqs") is None


def test_ld_library_path_is_looked_at_before_the_system_dirs() -> None:
    dirs = library_dirs({"LD_LIBRARY_PATH": "/opt/oqs/lib::/opt/more"})
    assert dirs[:2] == ["/opt/oqs/lib", "/opt/more"]
    assert "/usr/lib" in dirs and "/usr/local/lib" in dirs
