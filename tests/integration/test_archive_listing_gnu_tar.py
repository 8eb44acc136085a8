"""The archive check reading a real GNU tar's listing, as a node makes it before unpacking or
while it unpacks (a streamed upload)."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

from edeliver.adapters.node.archive_check import LISTING, UNPACK_LISTING, listing_problems
from tests.support.archives import EVIL, FOUND, crafted


def test_a_node_listing_with_an_owner_name_with_spaces_is_read_right(tmp_path: Path) -> None:
    """GNU tar's numeric listing of an archive whose owner is "evil user": same problems."""
    archive = crafted(tmp_path / "evil.tar.gz", EVIL, owner="evil user")
    listing = subprocess.run(
        f"{LISTING} {archive}", shell=True, capture_output=True, text=True, check=True
    ).stdout
    assert listing_problems(listing.splitlines()) == FOUND


def _unpacked(archive: Path, into: Path) -> subprocess.CompletedProcess[str]:
    into.mkdir()
    unpack = f"{UNPACK_LISTING} - -C {into} --no-same-owner <{archive}"
    return subprocess.run(unpack, shell=True, capture_output=True, text=True, check=False)


def test_an_unpack_prints_the_listing_a_listing_prints(tmp_path: Path) -> None:
    """A release-shaped archive: the unpack's verbose output is the listing, line for line."""
    members = [
        ("app/", tarfile.DIRTYPE, ""),
        ("app/bin/", tarfile.DIRTYPE, ""),
        ("app/bin/my app", tarfile.REGTYPE, ""),
        ("app/bin/run", tarfile.SYMTYPE, "my app"),
        ("app/bin/again", tarfile.LNKTYPE, "app/bin/my app"),
    ]
    archive = crafted(tmp_path / "ok.tar.gz", members, owner="deploy user")
    listed = subprocess.run(
        f"{LISTING} {archive}", shell=True, capture_output=True, text=True, check=True
    ).stdout
    unpacked = _unpacked(archive, tmp_path / "into")
    assert unpacked.returncode == 0, unpacked.stderr
    assert unpacked.stdout == listed
    assert listing_problems(unpacked.stdout.splitlines()) == []
    assert (tmp_path / "into/app/bin/run").resolve() == tmp_path / "into/app/bin/my app"


def test_an_unpack_listing_names_what_it_wrote_of_an_unsafe_archive(tmp_path: Path) -> None:
    """What GNU tar writes of the crafted archive is named; the `..` member it refuses to
    write fails the unpack (a streamed install then fails), and nothing leaves the root."""
    unpacked = _unpacked(crafted(tmp_path / "evil.tar.gz", EVIL), tmp_path / "into")
    assert unpacked.returncode != 0
    assert listing_problems(unpacked.stdout.splitlines()) == FOUND[:3]
    assert not (tmp_path / "escape").exists()


def test_directories_an_unpack_creates_unlisted_are_read_as_directories(tmp_path: Path) -> None:
    """An archive without its directories' entries: the unpack's notes of the ones it made
    are read as directories, not refused as unreadable."""
    members = [("rel/bin/hello", tarfile.REGTYPE, ""), ("rel/lib/a b/x", tarfile.REGTYPE, "")]
    unpacked = _unpacked(crafted(tmp_path / "flat.tar.gz", members), tmp_path / "into")
    assert unpacked.returncode == 0, unpacked.stderr
    assert "Creating directory: rel/lib/a b" in unpacked.stdout
    assert listing_problems(unpacked.stdout.splitlines()) == []
