"""Reads `.deliver/edeliver.toml` from a project; the app name defaults to the mix project's."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from edeliver.adapters.local.legacy_config import LEGACY_CONFIG, migrate_project
from edeliver.adapters.local.ssh_config import config_files
from edeliver.core.domain.config import Config
from edeliver.core.domain.config_parser import parse_config
from edeliver.core.domain.errors import ConfigError

CONFIG_FILE = Path(".deliver/edeliver.toml")
_MIX_APP = re.compile(r"\bapp:\s*:([a-z_][a-zA-Z0-9_]*)")


def load_config(project: Path) -> Config:
    """The project's configuration, validated; errors name the file as the user would type it."""
    path = project / CONFIG_FILE
    shown = str(CONFIG_FILE) if project.resolve() == Path.cwd().resolve() else str(path)
    if not path.exists() and (project / LEGACY_CONFIG).is_file():
        return _from_legacy(project)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            shown,
            "",
            "not found; `edeliver init` writes one, `edeliver migrate-config --write` turns an "
            "edeliver 1.x .deliver/config into one",
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(shown, "", f"cannot be read: {error}") from None
    config = parse_config(text, shown)
    return config if config.app else replace(config, app=mix_app_name(project))


def mix_app_name(project: Path) -> str | None:
    """The `app:` of mix.exs, which names the release too."""
    try:
        found = _MIX_APP.search((project / "mix.exs").read_text(encoding="utf-8"))
    except OSError:
        return None
    return found.group(1) if found else None


def _from_legacy(project: Path) -> Config:
    """An edeliver 1.x project without edeliver.toml: its .deliver/config, read by bash and
    mapped as `edeliver migrate-config` would write it."""
    source = f"{LEGACY_CONFIG} (edeliver 1.x)"
    migration = migrate_project(project, config_files(None, project), str(LEGACY_CONFIG))
    config = parse_config(migration.toml, source)
    return config if config.app else replace(config, app=mix_app_name(project))
