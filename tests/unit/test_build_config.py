"""`[build] mix_env` and `[build] release`: defaults, values as written, bad names refused."""

from __future__ import annotations

import pytest

from edeliver.core.domain.config_parser import parse_config
from edeliver.core.domain.errors import ConfigError

FILE = ".deliver/edeliver.toml"


def test_builds_default_to_mix_env_prod_and_mix_s_default_release() -> None:
    """Without the keys, builds run with MIX_ENV=prod and no release name."""
    build = parse_config("", FILE).build
    assert (build.mix_env, build.release) == ("prod", "")


@pytest.mark.parametrize("strategy", ["local", "remote", "docker"])
def test_mix_env_and_release_apply_to_every_strategy(strategy: str) -> None:
    """The keys are read whatever the strategy."""
    extra = {"local": "", "remote": 'host = "b@h:/srv/b"\n', "docker": 'image = "i"\n'}[strategy]
    text = f'[build]\nstrategy = "{strategy}"\n{extra}mix_env = "staging"\nrelease = "ledger"\n'
    build = parse_config(text, FILE).build
    assert (build.mix_env, build.release) == ("staging", "ledger")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('mix_env = "Prod"', "build.mix_env: expected a MIX_ENV such as prod"),
        ('mix_env = "prod; rm -rf /"', "build.mix_env: expected a MIX_ENV"),
        ("release = 1", "build.release: expected the name of a release in mix.exs"),
        ('release = "my-app"', "build.release: expected the name of a release in mix.exs"),
    ],
)
def test_a_bad_mix_env_or_release_name_is_one_line_naming_the_key(line: str, message: str) -> None:
    """Names become atoms and directories: only lowercase letters, digits and _ pass."""
    with pytest.raises(ConfigError, match=message.replace(";", ".")):
        parse_config(f"[build]\n{line}\n", FILE)
