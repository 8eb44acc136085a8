"""asyncssh's import without the processes it starts to look for optional C libraries.

On import, `asyncssh.crypto` asks `ctypes.util.find_library` for liboqs (`oqs`, `liboqs`: its
post-quantum key exchanges) and nettle (`nettle`, `libnettle`, `libnettle-6`: UMAC). On Linux
each ask runs `ldconfig -p`, then `gcc` and `ld` when it finds nothing: ~40 ms of every SSH
command's start (median of 8 alternating `import asyncssh`, the edeliver package's own import
taken out). Here those names are looked up where the dynamic loader looks by default
(`LD_LIBRARY_PATH`, then the system library dirs), by listing those dirs: a library installed
there is found and used as before. Every other name goes to ctypes.

`install()` puts a finder first on `sys.meta_path` that does this just before `asyncssh.crypto`
is imported (ctypes itself, ~20 ms, is only imported then).
"""

from __future__ import annotations

import glob
import os
import re
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

_LOOKED_UP = frozenset({"oqs", "liboqs", "nettle", "libnettle", "libnettle-6"})
_SONAME = re.compile(r"\.so\.\d+$")
_SYSTEM_DIRS = ("/usr/local/lib", "/usr/local/lib64", "/lib", "/lib64", "/usr/lib", "/usr/lib64")


def library_dirs(environ: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """Where the dynamic loader looks without an ldconfig cache entry: LD_LIBRARY_PATH first."""
    given = [d for d in environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    multiarch = sorted(glob.glob("/usr/lib/*-linux-gnu")) + sorted(glob.glob("/lib/*-linux-gnu"))
    return [*given, *multiarch, *_SYSTEM_DIRS]


def find_in(dirs: Sequence[str], name: str) -> str | None:
    """The path of library `name` (`oqs` or `liboqs`: `liboqs.so*`) in the first of `dirs`
    that has it: its `.so.N` (the soname ldconfig would name) before other versioned files and
    the bare development link."""
    stem = name if name.startswith("lib") else f"lib{name}"
    for directory in dirs:
        found = glob.glob(os.path.join(glob.escape(directory), f"{stem}.so*"))
        if found:
            return min(found, key=lambda path: (not _SONAME.search(path), -len(path), path))
    return None


class _BeforeAsyncsshCrypto:
    """A meta path finder that finds nothing: it only swaps `find_library` just before
    `asyncssh.crypto` is imported, then leaves `sys.meta_path`."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == "asyncssh.crypto":
            import ctypes.util  # here: its import (~20 ms) is what this finder defers

            original = ctypes.util.find_library

            def find_library(name: str) -> str | None:
                return find_in(library_dirs(), name) if name in _LOOKED_UP else original(name)

            ctypes.util.find_library = find_library
            sys.meta_path.remove(self)
        return None


def install() -> None:
    """Before asyncssh is imported, on Linux (elsewhere find_library starts no process)."""
    if sys.platform.startswith("linux") and "asyncssh.crypto" not in sys.modules:
        if not any(isinstance(f, _BeforeAsyncsshCrypto) for f in sys.meta_path):
            sys.meta_path.insert(0, _BeforeAsyncsshCrypto())
