"""The archive check: one rule, read from GNU tar's listing on a node and by tarfile here.

A real GNU tar's listing: tests/integration/test_archive_listing_gnu_tar.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edeliver.adapters.node.archive_check import listing_problems, refusal, tarfile_problems
from tests.support.archives import EVIL, FOUND, crafted

NUMERIC_LISTING = [
    ("drwxr-xr-x 0/0         0 2026-11-26 06:40 bin/", None),
    ("-rwxr-xr-x 0/0      5306 2026-11-26 06:40 bin/my app", None),
    ("lrwxrwxrwx 0/0         0 2026-11-26 06:40 bin/run -> ../lib/run", None),
    ("hrwxr-xr-x 0/0         0 2026-11-26 06:40 bin/b link to bin/my app", None),
    ("-rw-r--r-- 0/0         1 2026-11-26 06:40 /etc/cron.d/x", "outside"),
    ("-rw-r--r-- 0/0         1 2026-11-26 06:40 lib/../../x", "outside"),
    ("lrwxrwxrwx 0/0         0 2026-11-26 06:40 lib/x -> ../../etc", "points outside"),
    ("lrwxrwxrwx 0/0         0 2026-11-26 06:40 lib/x -> /etc/passwd", "points outside"),
    ("lrwxrwxrwx 0/0         0 2026-11-26 06:40 a -> b -> c", "ambiguous"),
    ("hrw-r--r-- 1000/1000   0 2026-11-26 06:40 lib/x link to ../etc/passwd", "hard link"),
    ("crw-r--r-- 0/0       1,3 2026-11-26 06:40 dev/null", "special"),
    ("lrwxrwxrwx evil user/root 0 2026-11-26 06:40 bin/x -> /tmp", "unreadable"),
    ("gibberish", "unreadable"),
    # an unpack's note of a directory it made for members the archive lists without it
    ("drwxr-xr-x                  Creating directory: lib/a b", None),
    ("drwxr-xr-x                  Creating directory: ../up", "outside"),
    ("drwxr-xr-x Creating directory:", "unreadable"),
]


@pytest.mark.parametrize(("line", "problem"), NUMERIC_LISTING)
def test_unsafe_entries_are_found_in_a_numeric_listing(line: str, problem: str | None) -> None:
    """Absolute names, `..`, links leaving the release, special files and any line not in
    the numeric-owner shape are problems; plain files, dirs and inside links are not."""
    found = listing_problems([line])
    assert (problem in found[0]) if problem else found == []


def test_tarfile_finds_every_unsafe_member_of_an_archive_here(tmp_path: Path) -> None:
    """The deployer's own reading: each escaping link, special file and `..` path named."""
    assert tarfile_problems(crafted(tmp_path / "evil.tar.gz", EVIL)) == FOUND


def test_a_file_that_is_not_a_gzipped_tar_is_a_problem(tmp_path: Path) -> None:
    """Garbage is refused with a reason, not a traceback."""
    garbage = tmp_path / "x.tar.gz"
    garbage.write_bytes(b"not a tar")
    assert tarfile_problems(garbage)[0].startswith("not a readable gzipped tar")


def test_a_refusal_names_the_archive_the_version_and_the_first_entries() -> None:
    """At most five problems shown, and how many more there are."""
    said = refusal("hello-1.0.0.tar.gz", "1.0.0", [f"p{i}" for i in range(7)])
    assert said == (
        "refusing to unpack hello-1.0.0.tar.gz (version 1.0.0): p0; p1; p2; p3; p4 (and 2 more)"
    )
