"""The archive check reading a real GNU tar's listing, as a node makes it before unpacking."""

from __future__ import annotations

import subprocess
from pathlib import Path

from edeliver.adapters.node.archive_check import LISTING, listing_problems
from tests.support.archives import EVIL, FOUND, crafted


def test_a_node_listing_with_an_owner_name_with_spaces_is_read_right(tmp_path: Path) -> None:
    """GNU tar's numeric listing of an archive whose owner is "evil user": same problems."""
    archive = crafted(tmp_path / "evil.tar.gz", EVIL, owner="evil user")
    listing = subprocess.run(
        f"{LISTING} {archive}", shell=True, capture_output=True, text=True, check=True
    ).stdout
    assert listing_problems(listing.splitlines()) == FOUND
