"""A store's manifest read field by field before anything trusts it.

Every store (local, S3, SSH) keeps one `manifest.json` per version and per upgrade package. A
manifest someone edited, a truncated upload or an older tool's output must be refused where it
is read, naming the store's key and the field, before a deployment takes its lock: a `"size":
null` used to crash a rollout after the lock was taken. A bad manifest is bad input: exit 2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from edeliver.core.domain.errors import UsageError

_APP = re.compile(r"^[a-z][a-z0-9_]*$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PLATFORM = ("os", "arch", "libc", "libc_version")
_PROVENANCE = ("git_revision", "built_at", "erts", "otp", "elixir")


def checked_manifest(text: str, where: str) -> dict[str, Any]:
    """The manifest's fields, once each has the type and shape an Artifact needs; else a
    UsageError `<where>: <field>: expected …, got …`."""
    try:
        fields = json.loads(text)
    except ValueError as error:
        raise UsageError(f"{where}: not JSON: {error}") from None
    if not isinstance(fields, dict):
        raise UsageError(f"{where}: expected a JSON object, got {_shown(fields)}")
    present = {name: check for name, check in _OPTIONAL.items() if name in fields}
    for name, (check, expected) in {**_REQUIRED, **present}.items():
        if not check(value := fields.get(name)):
            raise UsageError(f"{where}: {name}: expected {expected}, got {_shown(value)}")
    return fields


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _matches(pattern: re.Pattern[str]) -> Callable[[object], bool]:
    return lambda value: isinstance(value, str) and bool(pattern.match(value))


def _is_platform(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        key in _PLATFORM and isinstance(item, str) for key, item in value.items()
    )


def _is_versions(value: object) -> bool:
    return isinstance(value, list) and all(_matches(_VERSION)(item) for item in value)


_Check = tuple[Callable[[object], bool], str]
_REQUIRED: dict[str, _Check] = {
    "app": (_matches(_APP), "a lower-case OTP app name"),
    "version": (_matches(_VERSION), "a version usable as a directory name"),
    "sha256": (_matches(_SHA256), "64 lower-case hex digits"),
    "size": (_is_size, "a non-negative integer"),
}
_OPTIONAL: dict[str, _Check] = {
    "kind": (lambda value: value in ("release", "upgrade"), '"release" or "upgrade"'),
    "platform": (_is_platform, f"an object of strings with keys among {', '.join(_PLATFORM)}"),
    "from_versions": (_is_versions, "a list of versions"),
    **{name: ((lambda value: isinstance(value, str)), "a string") for name in _PROVENANCE},
}


def _shown(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
