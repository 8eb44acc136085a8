"""The sources remote and container builds send (`git_source.archive`), on real git
repositories with submodules: each submodule's files at the commit the revision records, nested
submodules too, only the project directory's own, and a submodule not here refused by name."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from edeliver.adapters.build.git_source import archive, git_source
from edeliver.core.domain.errors import UsageError
from tests.support.ledger_project import FILE_SUBMODULES, git

FETCH = "`git submodule update --init --recursive` fetches it"


@pytest.fixture(autouse=True)
def file_submodules(monkeypatch: pytest.MonkeyPatch) -> None:
    """git refuses file:// submodules unless told otherwise."""
    for name, value in FILE_SUBMODULES.items():
        monkeypatch.setenv(name, value)


def repository(path: Path, files: dict[str, str]) -> Path:
    """A new repository at `path` with `files` committed."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    commit(path, files)
    return path


def commit(path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "change")


def add_submodule(project: Path, source: Path, at: str) -> None:
    git(project, "submodule", "-q", "add", str(source), at)
    git(project, "submodule", "-q", "update", "--init", "--recursive")
    git(project, "commit", "-qm", f"{at} as a submodule")


def contents(project: Path, tmp_path: Path) -> dict[str, str]:
    """Every file of the archive of HEAD, by path, with its text."""
    source = git_source(project)
    assert source is not None
    with tarfile.open(archive(source, tmp_path / "sources.tar.gz")) as packed:
        return {
            member.name: packed.extractfile(member).read().decode()  # type: ignore[union-attr]
            for member in packed
            if member.isfile()
        }


def test_submodules_come_at_the_recorded_commit_nested_ones_included(tmp_path: Path) -> None:
    """vendor/lib (with its own submodule deep/) is archived as the revision pins it, not as its
    checkout has moved on since."""
    deep = repository(tmp_path / "deep", {"b.txt": "deep"})
    lib = repository(tmp_path / "lib", {"a.txt": "v1"})
    add_submodule(lib, deep, "deep")
    project = repository(tmp_path / "app", {"mix.exs": "app"})
    add_submodule(project, lib, "vendor/lib")
    commit(project / "vendor/lib", {"a.txt": "v2"})  # a later commit, not recorded by app
    assert contents(project, tmp_path) == {
        ".gitmodules": (project / ".gitmodules").read_text(),
        "mix.exs": "app",
        "vendor/lib/.gitmodules": (project / "vendor/lib/.gitmodules").read_text(),
        "vendor/lib/a.txt": "v1",
        "vendor/lib/deep/b.txt": "deep",
    }


def test_a_project_in_a_subdirectory_gets_its_own_submodules_only(tmp_path: Path) -> None:
    """The project is apps/web of its repository: its submodule comes relative to it, the
    repository's other one not at all."""
    web_dep = repository(tmp_path / "web_dep", {"w.txt": "web"})
    other_dep = repository(tmp_path / "other_dep", {"o.txt": "other"})
    top = repository(tmp_path / "top", {"apps/web/mix.exs": "web", "README": "top"})
    add_submodule(top, web_dep, "apps/web/deps_src/web_dep")
    add_submodule(top, other_dep, "tools/other_dep")
    files = contents(top / "apps/web", tmp_path)
    assert files == {"mix.exs": "web", "deps_src/web_dep/w.txt": "web"}


def test_a_submodule_not_checked_out_here_is_refused_by_name(tmp_path: Path) -> None:
    """Deinitialized: one line naming the submodule and the command that fetches it."""
    lib = repository(tmp_path / "lib", {"a.txt": "v1"})
    project = repository(tmp_path / "app", {"mix.exs": "app"})
    add_submodule(project, lib, "vendor/lib")
    git(project, "submodule", "-q", "deinit", "-f", "vendor/lib")
    with pytest.raises(UsageError) as refused:
        contents(project, tmp_path)
    assert str(refused.value) == f"submodule vendor/lib: not checked out here; {FETCH}"


def test_a_submodule_whose_pinned_commit_is_not_here_is_refused_by_name(tmp_path: Path) -> None:
    """The superproject pins a commit the local submodule repository never fetched."""
    lib = repository(tmp_path / "lib", {"a.txt": "v1"})
    project = repository(tmp_path / "app", {"mix.exs": "app"})
    add_submodule(project, lib, "vendor/lib")
    commit(lib, {"a.txt": "v2"})  # upstream moves on; the project pins it without fetching here
    pinned = git(lib, "rev-parse", "HEAD")
    git(project, "update-index", "--cacheinfo", f"160000,{pinned},vendor/lib")
    git(project, "commit", "-qm", "pin v2")
    with pytest.raises(UsageError) as refused:
        contents(project, tmp_path)
    assert str(refused.value) == (
        f"submodule vendor/lib: its commit {pinned[:12]} is not in {project / 'vendor/lib'}; "
        f"{FETCH}"
    )
