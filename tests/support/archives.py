"""Crafted release archives the archive check must refuse, and the problems it must name.

Shared by the check read here by tarfile (unit) and from GNU tar's listing (integration).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def crafted(path: Path, members: list[tuple[str, bytes, str]], owner: str = "root") -> Path:
    """A gzipped tar of (name, type, link target) members, every one owned by `owner`."""
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.uname, info.gname = kind, target, owner, owner
            tar.addfile(info, io.BytesIO(b""))
    return path


EVIL = [
    ("bin/ok", tarfile.REGTYPE, ""),
    ("bin/hello", tarfile.SYMTYPE, "/tmp"),
    ("lib/up", tarfile.SYMTYPE, "../../../etc"),
    ("dev/null", tarfile.CHRTYPE, ""),
    ("../escape", tarfile.REGTYPE, ""),
]
FOUND = [
    "symlink 'bin/hello' points outside the release: '/tmp'",
    "symlink 'lib/up' points outside the release: '../../../etc'",
    "special file 'dev/null'",
    "path outside the release: '../escape'",
]
