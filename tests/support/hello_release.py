"""Offline builds of the `examples/hello` release, cached per version and variant.

A build lives in `.cache/hello-builds/<version>-<variant>/` and is reused while a digest of
the example's sources (and of the Elixir install) is unchanged. Run a release from a copy
(unpack `tarball()` into a temp dir), never from the cache: a running node writes `tmp/`
into its root and release_handler mutates `releases/`.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from edeliver.adapters.build.mix_build import MixLocalBuilder, local_platform
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.core.domain.model import Artifact

Variant = Literal["good", "broken", "v2"]

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = REPO_ROOT / "examples" / "hello"
CACHE_DIR = REPO_ROOT / ".cache" / "hello-builds"
SOURCE_PATTERNS = ("mix.exs", "lib/**/*.ex", "config/**/*", "rel/**/*")


def build_hello(version: str = "0.1.0", variant: Variant = "good") -> Path:
    """Return the root of a built `hello` release (bin/, erts-*/, lib/, releases/)."""
    return _built(version, variant).parent / "release"


def tarball(version: str = "0.1.0", variant: Variant = "good") -> Path:
    """Return a gzip tarball of the release root; entries have no `./` prefix."""
    return _built(version, variant)


def put_in_local_store(project: Path, releases: Iterable[tuple[str, Variant]]) -> None:
    """Put built tarballs (version, variant) into the project's local store, for this platform."""
    store = LocalDirectoryStore(project / ".deliver/releases")
    for version, variant in releases:
        built = Artifact("hello", version, "", 0, platform=local_platform())
        asyncio.run(store.put(tarball(version, variant), built))


def _built(version: str, variant: Variant) -> Path:
    entry = _entry(version, variant)
    with _locked(entry):
        if not _is_fresh(entry):
            _rebuild(entry, version, variant)
    return entry / f"hello-{version}.tar.gz"


def source_digest() -> str:
    """Hash of the example's sources and the Elixir install, the cache key of every build."""
    digest = hashlib.sha256(_toolchain_id().encode())
    for path in _source_files():
        digest.update(str(path.relative_to(SOURCE_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _entry(version: str, variant: Variant) -> Path:
    return CACHE_DIR / f"{version}-{variant}"


def _source_files() -> list[Path]:
    found = {p for pattern in SOURCE_PATTERNS for p in SOURCE_DIR.glob(pattern) if p.is_file()}
    return sorted(found)


def _toolchain_id() -> str:
    elixir = Path(shutil.which("elixir") or "elixir").resolve()
    return f"{elixir}:{elixir.stat().st_mtime_ns if elixir.exists() else 0}"


def _is_fresh(entry: Path) -> bool:
    stamp = entry / "source.sha256"
    built = (entry / "release" / "bin" / "hello").exists()
    return built and stamp.exists() and stamp.read_text() == source_digest()


def _rebuild(entry: Path, version: str, variant: Variant) -> None:
    """The product's own local builder, with the variant chosen by environment variables."""
    (entry / "source.sha256").unlink(missing_ok=True)
    home = entry / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": str(home),
        "MIX_HOME": str(home / ".mix"),
        "HEX_OFFLINE": "1",
        "MIX_BUILD_PATH": str(entry / "_build"),
        "HELLO_VERSION": version,
        "HELLO_VARIANT": variant,
    }
    builder = MixLocalBuilder(SOURCE_DIR, "hello", env=env, build_dir=entry)
    # On a worker thread with a loop of its own: an async test may be the first to ask for a
    # release, and asyncio.run refuses to start inside its running loop.
    with ThreadPoolExecutor(max_workers=1) as worker:
        built = worker.submit(asyncio.run, builder.build()).result()
    assert built.artifact.version == version, built.artifact
    (entry / "source.sha256").write_text(source_digest())


@contextmanager
def _locked(entry: Path) -> Iterator[None]:
    """Serialise builds of one entry across processes (pytest-xdist workers, a demo)."""
    entry.mkdir(parents=True, exist_ok=True)
    with (entry.parent / f"{entry.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
