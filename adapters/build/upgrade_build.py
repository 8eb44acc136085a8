"""Hot-upgrade packages: appups + relup between two stored releases, packed for release_handler.

Inputs are the pristine OLD and NEW full releases from the store, unpacked into a scratch dir
(never a node's live root: release_handler mutates it). `upgrade_relup.exs`, run by NEW's own
`bin/<name> eval` (so with the OTP the release ships), writes the appups and the relup into the
NEW copy; then the package is packed in the form `release_handler:unpack_release/1` accepts
(docs/hot-upgrades.md, reference hot-upgrades.md §3):

    releases/<name>-<NEW>.rel      a copy of releases/<NEW>/<name>.rel (the name it looks for)
    releases/<NEW>/**              boot files, sys.config, relup, consolidated/, runtime.exs
    lib/<app>-<vsn>/**             only app versions OLD lacks

Never `bin/`, `releases/COOKIE`, `releases/start_erl.data` or `releases/RELEASES`. Entries
have no `./` prefix, and the tar is reproducible (fixed mtimes, owners and gzip header), so the
same inputs always give the same checksum.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from edeliver.adapters.build.mix_build import BuildFailed
from edeliver.adapters.local.bounded_output import run_local
from edeliver.core.domain.errors import RefusedError
from edeliver.core.domain.model import Artifact

GENERATOR = Path(__file__).with_name("upgrade_relup.exs")
HAND_WRITTEN_APPUPS = Path("rel/appups")  # <project>/rel/appups/<app>.appup
_SUGGESTION = 'deploy it as a full release instead (mode = "release")'


class NotHot(RefusedError):
    """This change cannot be a hot upgrade; the message says why and what to do instead."""


@dataclass(frozen=True)
class UpgradeBuilt:
    """The package on this machine, its artifact (kind "upgrade") and what the generator said."""

    tarball: Path
    artifact: Artifact
    notes: tuple[str, ...]


def build_upgrade(old: Artifact, new: Artifact, work: Path, project: Path) -> UpgradeBuilt:
    """Generate appups and the relup OLD -> NEW and pack the upgrade package into `work`."""
    with _scratch(work) as scratch:
        old_root, new_root = scratch / "old", scratch / "new"
        unpack(Path(old.location), old_root)
        unpack(Path(new.location), new_root)
        name = release_name(new_root, new.version)
        check_same_cookie(old_root, new_root, name, old.version, new.version)
        copy_hand_written_appups(project, new_root, name, new.version)
        notes = generate_relup(old_root, new_root, name, old.version, new.version)
        tarball = work / f"{name}-{new.version}.tar.gz"
        pack_upgrade(old_root, new_root, name, old.version, new.version, tarball)
    artifact = replace(
        new, kind="upgrade", from_versions=(old.version,), location=str(tarball), sha256="", size=0
    )
    return UpgradeBuilt(tarball, artifact, notes)


@contextmanager
def _scratch(work: Path) -> Iterator[Path]:
    work.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="upgrade-", dir=work))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def unpack(tarball: Path, root: Path) -> None:
    """Unpack a stored release; tarfile's `data` filter refuses links or paths leaving `root`."""
    root.mkdir(parents=True)
    with tarfile.open(tarball) as archive:
        archive.extractall(root, filter="data")


def release_name(root: Path, version: str) -> str:
    rels = sorted((root / "releases" / version).glob("*.rel"))
    if len(rels) != 1:
        raise BuildFailed(f"{root}: expected one releases/{version}/<name>.rel, found {len(rels)}")
    return rels[0].stem


def check_same_cookie(old_root: Path, new_root: Path, name: str, old: str, new: str) -> None:
    """The running node keeps its cookie, but after make_permanent `bin/<name>` (rpc, stop)
    would use the new one and no longer reach it (hot-upgrades.md P3)."""
    cookies = [(root / "releases" / "COOKIE").read_bytes() for root in (old_root, new_root)]
    if cookies[0] != cookies[1]:
        raise NotHot(
            f"{name} {old} -> {new}: the release cookie changes, so the upgraded node could no "
            "longer be reached; set a fixed `cookie:` for the release in mix.exs (or "
            f"RELEASE_COOKIE), or {_SUGGESTION}"
        )


def copy_hand_written_appups(project: Path, new_root: Path, name: str, version: str) -> None:
    """`rel/appups/<app>.appup` of the project wins over a generated one (if it covers OLD)."""
    for appup in sorted((project / HAND_WRITTEN_APPUPS).glob("*.appup")):
        for ebin in (new_root / "lib").glob(f"{appup.stem}-*/ebin"):
            shutil.copyfile(appup, ebin / appup.name)


def generate_relup(
    old_root: Path, new_root: Path, name: str, old: str, new: str
) -> tuple[str, ...]:
    """Run the generator; its notes, or NotHot with the reason it refused."""
    env = {
        **os.environ,
        "EDELIVER_OLD_ROOT": str(old_root),
        "EDELIVER_NEW_ROOT": str(new_root),
        "EDELIVER_OLD_VSN": old,
        "EDELIVER_NEW_VSN": new,
        "EDELIVER_REL_NAME": name,
        "EDELIVER_TOOLCHAIN_APPS": ",".join(sorted(toolchain_apps())),
        "EDELIVER_RELUP_SCRIPT": str(GENERATOR),
    }
    code = 'Code.eval_file(System.fetch_env!("EDELIVER_RELUP_SCRIPT"))'
    done = run_local([str(new_root / "bin" / name), "eval", code], env=env, timeout=300)
    said = [line[9:] for line in done.stdout.splitlines() if line.startswith("edeliver:")]
    notes = tuple(line for line in said if not line.startswith(("ok:", "refused:")))
    if refused := [line.removeprefix("refused:") for line in said if line.startswith("refused:")]:
        raise NotHot(f"{name} {old} -> {new} cannot be a hot upgrade: {refused[0]}; {_SUGGESTION}")
    if done.returncode != 0 or "ok:" not in said:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise BuildFailed(f"generating the relup {old} -> {new} failed:\n{tail}")
    return notes


def toolchain_apps() -> set[str]:
    """The applications of the OTP and Elixir installed here (what the release was built with):
    they ship no appups, so a change of theirs is a new emulator or Elixir, not a hot upgrade."""
    apps = set()
    for tool, up in (("erl", 2), ("elixir", 2)):
        found = shutil.which(tool)
        if found:
            lib = Path(found).resolve().parents[up - 1] / "lib"
            apps |= {d.name.partition("-")[0] for d in lib.iterdir()} if lib.is_dir() else set()
    return apps


def pack_upgrade(
    old_root: Path, new_root: Path, name: str, old: str, new: str, tarball: Path
) -> None:
    """The package release_handler unpacks, reproducibly, renamed into place when complete."""
    old_libs = {p.name for p in (old_root / "lib").iterdir()}
    entries = [(new_root / "releases" / new / f"{name}.rel", f"releases/{name}-{new}.rel")]
    entries += _tree(new_root, f"releases/{new}")
    for lib in sorted((new_root / "lib").iterdir()):
        if lib.name not in old_libs:
            entries += _tree(new_root, f"lib/{lib.name}")
    partial = tarball.with_name(tarball.name + ".partial")
    with (
        partial.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for source, arcname in entries:
            info = archive.gettarinfo(str(source), arcname)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isfile():
                with source.open("rb") as content:
                    archive.addfile(info, content)
            else:
                archive.addfile(info)
    partial.replace(tarball)


def _tree(root: Path, relative: str) -> list[tuple[Path, str]]:
    top = root / relative
    found = [(top, relative)]
    for path in sorted(top.rglob("*")):
        found.append((path, f"{relative}/{path.relative_to(top)}"))
    return found
