"""Is an archive safe to unpack into a release root? One rule, read two ways.

A release tarball or a hot-upgrade package may hold only directories, regular files, and links
that stay inside the root it is unpacked into: no absolute path, no `..` step, no symlink or
hard link whose target leaves the root, no device, fifo or other special file.

The deployer reads the archive itself with `tarfile` (`tarfile_problems`) before it uploads
anything; a node lists it with GNU tar (`LISTING`, or the unpack that prints the same listing,
`UNPACK_LISTING`) and `listing_problems` parses that listing.
The listing is read without guessing: `--numeric-owner` turns owner and group into one
`uid/gid` field (an owner name may contain spaces, which used to shift every column), and a
link whose name or target itself holds the arrow is refused as ambiguous, never split.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# GNU tar's verbose listing in a fixed shape: numeric owner, C locale dates, names escaped.
_LISTED = "LC_ALL=C tar --numeric-owner --quoting-style=escape"
LISTING = f"{_LISTED} -tzvf"
# The unpack that prints the same listing of what it writes (and a note for each directory it
# creates that the archive does not list): one read of the archive where a listing and an
# unpack were two.
UNPACK_LISTING = f"{_LISTED} -xzvvf"
_CREATING = ("Creating", "directory:")
# Output a listing is read with: whole, where other output keeps its last 64 KiB. A release of a
# real app lists thousands of entries (~100 bytes each); a listing cut to its tail would be
# refused as unreadable.
LISTING_LIMIT = 32 * 1024 * 1024
_SHOWN = 5  # problems named in a refusal


@dataclass(frozen=True)
class Entry:
    """One archive member: `kind` as `ls -l` writes it (`-` file, `d`, `l` symlink, `h` hard
    link, anything else special), its name, and its link target ("" unless a link)."""

    kind: str
    name: str
    target: str = ""


def problem_of(entry: Entry) -> str | None:
    """Why unpacking `entry` could write or point outside the release root, or None."""
    name, target = entry.name, entry.target
    if entry.kind not in ("-", "d", "l", "h"):
        return f"special file {name!r}"
    if _outside(name):
        return f"path outside the release: {name!r}"
    if entry.kind == "h" and _outside(target):
        return f"hard link {name!r} to a path outside the release: {target!r}"
    if entry.kind == "l" and _link_leaves(name, target):
        return f"symlink {name!r} points outside the release: {target!r}"
    return None


def problems_of(entries: Iterable[Entry | str]) -> list[str]:
    """The problems of a whole listing; a str stands for an entry that could not be read."""
    found = []
    for entry in entries:
        problem = entry if isinstance(entry, str) else problem_of(entry)
        if problem:
            found.append(problem)
    return found


def tarfile_problems(archive: Path) -> list[str]:
    """The problems of a gzipped tar on this machine, read by Python's tarfile."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            return problems_of(_entry_of(member) for member in tar)
    except (tarfile.TarError, EOFError, OSError) as error:
        return [f"not a readable gzipped tar: {error}"]


def listing_problems(lines: Iterable[str]) -> list[str]:
    """The problems of a `LISTING` of an archive, as a node printed it."""
    return problems_of(_parsed(line) for line in lines if line.strip())


def refusal(what: str, version: str, problems: list[str]) -> str:
    """The message of a refused archive: which one, which version, which entries."""
    shown = "; ".join(problems[:_SHOWN])
    more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
    return f"refusing to unpack {what} (version {version}): {shown}{more}"


def _entry_of(member: tarfile.TarInfo) -> Entry:
    kind = (
        "d" if member.isdir()
        else "l" if member.issym()
        else "h" if member.islnk()
        else "-" if member.isreg()
        else "special"
    )  # fmt: skip
    return Entry(kind, member.name, member.linkname if kind in ("l", "h") else "")


def _parsed(line: str) -> Entry | str:
    """`mode uid/gid size date time name[ -> target | link to target]`, or why it is not;
    an unpack's `mode Creating directory: name`, a directory its members' paths imply."""
    parts = line.split(None, 5)
    if tuple(parts[1:3]) == _CREATING and len(parts) > 3:
        return Entry("d", line.split(None, 3)[3])
    if len(parts) < 6 or not _numeric_owner(parts[1]):
        return f"unreadable entry {line!r}"
    kind, rest = parts[0][:1], parts[5]
    if kind not in ("l", "h"):
        return Entry(kind, rest)
    arrow = " -> " if kind == "l" else " link to "
    name, sep, target = rest.partition(arrow)
    if not sep or arrow in target:
        return f"ambiguous link entry {rest!r}"
    return Entry(kind, name, target)


def _numeric_owner(field: str) -> bool:
    uid, sep, gid = field.partition("/")
    return bool(sep) and uid.isdigit() and gid.isdigit()


def _outside(member: str) -> bool:
    return member.startswith("/") or ".." in member.split("/")


def _link_leaves(name: str, target: str) -> bool:
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name.rstrip("/")), target))
    return target.startswith("/") or resolved == ".." or resolved.startswith("../")
