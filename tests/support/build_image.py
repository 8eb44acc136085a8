"""A container image to build releases in, made locally without any registry, cached.

A minimal Debian 12 root from debootstrap with Debian's elixir and erlang, imported into podman
as `IMAGE`. The root's tarball is cached under `.cache/build-image/`, so a later run only
imports it (seconds) and a run on a fresh machine builds it (about a minute).
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
import time
from pathlib import Path

from tests.support.hello_release import REPO_ROOT

IMAGE = "localhost/edeliver-build:bookworm-git"
CACHE = REPO_ROOT / ".cache" / "build-image"
# git: mix fetches git dependencies with it.
PACKAGES = "elixir,erlang-dev,erlang-xmerl,ca-certificates,git"
# Podman here: crun cannot set rlimits, runc can, with limits below the hard ones.
PODMAN_GLOBAL = ["--runtime", "runc"]
RUN_OPTIONS = ["--ulimit", "nofile=1024:4096", "--ulimit", "nproc=1024:4096"]


def ensure_image() -> float:
    """Make sure podman has IMAGE; returns the seconds it took (0 when it was there)."""
    started = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _podman("image", "exists", IMAGE).returncode == 0:
            return 0.0
        rootfs = CACHE / "rootfs-git.tar"
        if not rootfs.is_file():
            _debootstrap(rootfs)
        imported = _podman("import", str(rootfs), IMAGE)
        assert imported.returncode == 0, imported.stderr
    return time.monotonic() - started


def _debootstrap(rootfs: Path) -> None:
    root = CACHE / "root"
    shutil.rmtree(root, ignore_errors=True)
    command = ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm"]
    done = subprocess.run(
        [*command, str(root), _mirror()], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    partial = rootfs.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
    partial.replace(rootfs)
    shutil.rmtree(root, ignore_errors=True)


def _mirror() -> str:
    """The Debian mirror apt is configured with (the only one reachable here)."""
    for source in sorted(Path("/etc/apt").glob("sources.list*")) + sorted(
        Path("/etc/apt/sources.list.d").glob("*.sources")
    ):
        if source.is_file() and (
            found := re.search(r"(https?://\S+/debian)\b/?\s", source.read_text())
        ):
            return found.group(1)
    return "http://deb.debian.org/debian"


def _podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *PODMAN_GLOBAL, *args], capture_output=True, text=True, check=False
    )
