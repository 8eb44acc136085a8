"""Release versions in the order people mean: SemVer 2.0 precedence (the semver library).

`0.10.0` is newer than `0.9.0`, and a pre-release comes before its release (`0.10.0-rc.1` <
`0.10.0`), so a deploy without `--version` never picks a release candidate over the release.
SemVer ignores build metadata, but Edeliver's `auto_version` puts the commit count there
(`1.0.0+12.abc1234`), so between equal versions the metadata breaks the tie, numbers by value.
A version that is not SemVer at all (mix refuses those, but a store may hold anything) sorts
before every SemVer version, among its kind by its numbers.
"""

from __future__ import annotations

import re
from functools import cmp_to_key

import semver

_PART = re.compile(r"[.+_-]")


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as `a` is older than, the same as, or newer than `b`."""
    ours, theirs = _parsed(a), _parsed(b)
    if ours is None or theirs is None:
        by_kind = (ours is not None) - (theirs is not None)
        return by_kind or _sign(_numbers_first(a), _numbers_first(b))
    return ours.compare(theirs) or _sign(
        _numbers_first(ours.build or ""), _numbers_first(theirs.build or "")
    )


# A sort key: `sorted(versions, key=version_key)` lists them oldest first.
version_key = cmp_to_key(compare_versions)


def _parsed(version: str) -> semver.Version | None:
    try:
        return semver.Version.parse(version)
    except ValueError:
        return None


def _numbers_first(text: str) -> tuple[tuple[int, str], ...]:
    """Dot-separated parts compared as numbers where they are numbers (`+10` after `+9`)."""
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in _PART.split(text) if p)


def _sign(a: tuple[tuple[int, str], ...], b: tuple[tuple[int, str], ...]) -> int:
    return (a > b) - (a < b)
