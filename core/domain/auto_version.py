"""Versions like edeliver 1.x's AUTO_VERSION: the mix version plus build metadata.

`[build] auto_version = ["commit_count", "revision"]` builds `0.4.0+118.3f9c2ab`: semver build
metadata, dot-separated, in the order given. Each build gets its own version, so the store's
rule that a version is never rebuilt differently holds without bumping mix.exs for every build.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

PARTS: Final = ("commit_count", "revision", "branch", "date")
_NOT_IDENTIFIER = re.compile(r"[^0-9A-Za-z-]+")


def version_suffix(parts: Sequence[str], facts: Mapping[str, str]) -> str:
    """The build metadata for `parts` (without the `+`), each value made a semver identifier:
    a branch `feature/login` becomes `feature-login`."""
    return ".".join(_NOT_IDENTIFIER.sub("-", facts[part]).strip("-") or "0" for part in parts)
