"""The app a project ships: named in its config (or by its mix project). Releases, upgrades
and their packages are found by this name, so every command that needs one asks here."""

from __future__ import annotations

from edeliver.core.domain.config import Config
from edeliver.core.domain.errors import UsageError


class AppNotSet(UsageError):
    """Neither the config nor a mix.exs names the app."""

    def __init__(self, config_file: str) -> None:
        super().__init__(f"{config_file}: app: not set and no mix.exs project name found")


def app_name(config: Config) -> str:
    """The app's name, or AppNotSet naming the config file."""
    if not config.app:
        raise AppNotSet(config.file)
    return config.app
