"""Versions in SemVer 2.0 order, with auto_version's build metadata breaking ties."""

from __future__ import annotations

import random

import pytest

from edeliver.core.domain.versions import compare_versions, version_key

OLDEST_FIRST = [
    "0.9.0",
    "0.10.0-alpha",
    "0.10.0-alpha.2",
    "0.10.0-alpha.10",
    "0.10.0-beta",
    "0.10.0-rc.1",
    "0.10.0",
    "0.10.0+2.733a569",
    "0.10.0+10.1d013c8",
    "0.10.1",
    "1.0.0-rc.1",
    "1.0.0",
    "10.0.0",
]


def test_versions_sort_in_semver_precedence_whatever_order_they_come_in() -> None:
    """Pre-releases before their release, numbers by value, build metadata by its numbers."""
    shuffled = OLDEST_FIRST[:]
    random.Random(7).shuffle(shuffled)
    assert sorted(shuffled, key=version_key) == OLDEST_FIRST


@pytest.mark.parametrize(
    ("older", "newer"),
    [("0.10.0-rc.1", "0.10.0"), ("0.9.9", "0.10.0"), ("1.0.0+9", "1.0.0+10")],
)
def test_the_newest_version_is_never_a_pre_release_of_a_stored_release(
    older: str, newer: str
) -> None:
    """`deploy` without --version takes the last version: the release, not its candidate."""
    assert max([newer, older], key=version_key) == newer
    assert compare_versions(older, newer) == -1
    assert compare_versions(newer, older) == 1


def test_versions_that_are_not_semver_sort_before_every_semver_version() -> None:
    """A store may hold anything; such versions still sort, by their numbers."""
    assert sorted(["1.0.0", "2024.10", "2024.9", "0.0.1"], key=version_key) == [
        "2024.9",
        "2024.10",
        "0.0.1",
        "1.0.0",
    ]
    assert compare_versions("1.0.0", "1.0.0") == 0
