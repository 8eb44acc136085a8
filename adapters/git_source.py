"""The sources of a build, from the local git checkout: a revision, never the working tree.

Remote and container builds send `git archive` of the revision (no push to any repository), so
what is built is exactly a commit; uncommitted changes are not in it, and the user is warned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edeliver.adapters.bounded_output import run_local
from edeliver.core.errors import UsageError


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
    """A tar.gz of the project's directory at the revision, paths relative to the project."""
    tree = f"{source.revision}:{source.prefix}" if source.prefix else source.revision
    target.parent.mkdir(parents=True, exist_ok=True)
    _git(source.project, "archive", "--format=tar.gz", "-o", str(target), tree)
    return target


def describe(source: GitSource) -> str:
    return f"{source.revision[:12]}" + (
        " (uncommitted changes are not built)" if source.dirty else ""
    )


def _git(project: Path, *args: str, check: bool = True) -> str:
    done = run_local(["git", "-C", str(project), *args])
    if check and done.returncode != 0:
        raise UsageError(f"git {args[0]} failed in {project}: {done.stderr.strip()}")
    return done.stdout.strip()
