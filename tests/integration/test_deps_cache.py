"""The build host's per-app deps cache: moved into a fresh build dir, and back after the build."""

from __future__ import annotations

import subprocess
from pathlib import Path

from edeliver.adapters.build.remote_build import keep_deps_script, reuse_deps_script


def _sh(script: str) -> None:
    subprocess.run(["sh", "-c", script], check=True)


def test_a_build_takes_the_cache_and_gives_back_its_own_deps(tmp_path: Path) -> None:
    """In: the cache's deps/ and _build/; out: the build's, replacing the older ones."""
    cache, build = tmp_path / "cache/ledger", tmp_path / "build"
    (cache / "deps/tally").mkdir(parents=True)
    (cache / "_build/prod").mkdir(parents=True)
    build.mkdir()
    _sh(reuse_deps_script(str(build), str(cache)))
    assert (build / "deps/tally").is_dir() and (build / "_build/prod").is_dir()
    assert not (cache / "deps").exists()
    (build / "deps/stamp").mkdir()
    (cache / "deps/old").mkdir(parents=True)  # left by a build that ran at the same time
    _sh(keep_deps_script(str(build), str(cache)))
    assert sorted(p.name for p in (cache / "deps").iterdir()) == ["stamp", "tally"]
    assert not (build / "deps").exists()


def test_a_first_build_starts_cold_and_sources_that_bring_deps_keep_them(tmp_path: Path) -> None:
    """No cache: nothing moves; deps/ shipped in the sources are not replaced by the cache's."""
    cache, build = tmp_path / "cache/ledger", tmp_path / "build"
    (build / "deps/own").mkdir(parents=True)
    _sh(reuse_deps_script(str(build), str(cache)))
    assert [p.name for p in (build / "deps").iterdir()] == ["own"]
