"""Reads an edeliver 1.x `.deliver/config` the way edeliver 1.x did: by sourcing it with bash."""

from __future__ import annotations

import subprocess
from pathlib import Path

from edeliver.core.errors import ConfigError
from edeliver.core.legacy import KNOWN

LEGACY_CONFIG = Path(".deliver/config")
# Source the config in a clean bash, then print the known variables and every function name,
# NUL-separated, so no value can be mistaken for another.
_READER = r"""
source "$1" >/dev/null || exit 97
for name in "${@:2}"; do printf '%s\0%s\0' "$name" "${!name-}"; done
printf '%s\0' --functions--; compgen -A function | tr '\n' '\0'
"""


def read_legacy_config(project: Path) -> tuple[dict[str, str], list[str]]:
    """The known variables and the function names a legacy config defines."""
    path = project / LEGACY_CONFIG
    if not path.is_file():
        raise ConfigError(str(LEGACY_CONFIG), "", "not found; nothing to migrate")
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", _READER, "edeliver-config", str(path), *KNOWN],
        cwd=project,
        capture_output=True,
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(
            str(LEGACY_CONFIG),
            "",
            "bash cannot source it: "
            + (" ".join(said[-2:]) if said else f"exit {done.returncode}"),
        )
    fields = done.stdout.decode(errors="replace").split("\0")
    split = fields.index("--functions--")
    values = fields[:split]
    variables = {values[i]: values[i + 1] for i in range(0, len(values) - 1, 2)}
    return variables, [f for f in fields[split + 1 :] if f]
