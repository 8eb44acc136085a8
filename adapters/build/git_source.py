"""The sources of a build, from the local git checkout: a revision, never the working tree.

Remote and container builds send `git archive` of the revision (no push to any repository), so
what is built is exactly a commit; uncommitted changes are not in it, and the user is warned.
Submodules are part of the sources: each one's files at the commit the revision records, taken
from its local repository (recursively), as `git submodule update` would check them out.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edeliver.adapters.local.bounded_output import run_local
from edeliver.core.domain.errors import UsageError


@dataclass(frozen=True)
class GitSource:
    project: Path
    revision: str  # the full commit id
    prefix: str  # the project's directory inside the repository, "" at its top
    dirty: bool


def git_source(project: Path, revision: str = "HEAD") -> GitSource | None:
    """The commit `revision` names, or None when `project` is not in a git checkout."""
    if _git(project, "rev-parse", "--is-inside-work-tree", check=False) != "true":
        return None
    commit = _git(
        project, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", check=False
    )
    if not commit:
        raise UsageError(f"{project}: git revision {revision!r} does not exist")
    prefix = _git(project, "rev-parse", "--show-prefix")
    dirty = bool(_git(project, "status", "--porcelain", "--untracked-files=no", "--", "."))
    return GitSource(project, commit, prefix.rstrip("/"), dirty)


def version_facts(project: Path, revision: str, now: datetime) -> dict[str, str]:
    """What `[build] auto_version` may append: the revision's commit count and short id, the
    checked-out branch, and the build's UTC date and time."""
    if _git(project, "rev-parse", "--is-inside-work-tree", check=False) != "true":
        raise UsageError(f"build.auto_version: {project} is not in a git checkout")
    return {
        "commit_count": _git(project, "rev-list", "--count", revision),
        "revision": _git(project, "rev-parse", "--short=7", revision),
        "branch": _git(project, "rev-parse", "--abbrev-ref", "HEAD"),
        "date": now.strftime("%Y%m%d-%H%M%S"),
    }


def archive(source: GitSource, target: Path) -> Path:
    """A tar.gz of the project's directory at the revision, paths relative to the project, its
    submodules' files included."""
    target.parent.mkdir(parents=True, exist_ok=True)
    top = Path(_git(source.project, "rev-parse", "--show-toplevel"))
    with tarfile.open(target, "w:gz") as packed:
        _add_tree(packed, top, source.revision, source.prefix, "")
    return target


def _add_tree(packed: tarfile.TarFile, repository: Path, commit: str, inside: str, at: str) -> None:
    """The directory `inside` of `commit` ("": all of it) under `at` in `packed`, then each
    submodule in it the same way, from the submodule's own repository."""
    tree = f"{commit}:{inside}" if inside else commit
    listed = _git_output(repository, "archive", "--format=tar", f"--prefix={at}", tree)
    with tarfile.open(fileobj=io.BytesIO(listed)) as files:
        for member in files:
            packed.addfile(member, files.extractfile(member) if member.isfile() else None)
    for path, pinned in _submodules(repository, commit, inside):
        shown = f"{at}{path}"
        sub = _submodule_repository(repository / inside / path, pinned, shown)
        _add_tree(packed, sub, pinned, "", f"{shown}/")


def _submodules(repository: Path, commit: str, inside: str) -> Iterator[tuple[str, str]]:
    """Each submodule (gitlink) below `inside` in `commit`: its path relative to `inside` and
    the commit the superproject records for it."""
    below = f"{inside}/" if inside else ""
    listing = _git_output(repository, "ls-tree", "-r", "-z", "--full-tree", commit)
    for entry in listing.decode().split("\0"):
        meta, _, path = entry.partition("\t")
        if meta.startswith("160000 commit ") and path.startswith(below):
            yield path.removeprefix(below), meta.split()[2]


def _submodule_repository(checkout: Path, pinned: str, shown: str) -> Path:
    """The submodule's local checkout, once it is known to hold the pinned commit."""
    fetch = "`git submodule update --init --recursive` fetches it"
    if not (checkout / ".git").exists():
        raise UsageError(f"submodule {shown}: not checked out here; {fetch}")
    if _git(checkout, "cat-file", "-t", pinned, check=False) != "commit":
        raise UsageError(
            f"submodule {shown}: its commit {pinned[:12]} is not in {checkout}; {fetch}"
        )
    return checkout


def describe(source: GitSource) -> str:
    return f"{source.revision[:12]}" + (
        " (uncommitted changes are not built)" if source.dirty else ""
    )


def _git_output(project: Path, *args: str) -> bytes:
    done = subprocess.run(["git", "-C", str(project), *args], capture_output=True, check=False)
    if done.returncode != 0:
        raise UsageError(f"git {args[0]} failed in {project}: {done.stderr.decode().strip()}")
    return done.stdout


def _git(project: Path, *args: str, check: bool = True) -> str:
    done = run_local(["git", "-C", str(project), *args])
    if check and done.returncode != 0:
        raise UsageError(f"git {args[0]} failed in {project}: {done.stderr.strip()}")
    return done.stdout.strip()
