"""edeliver 1.x's variables, as bash left them after sourcing .deliver/config, mapped onto
edeliver.toml (pure). Sourcing a real config: tests/integration/test_legacy_config_sourced.py.
"""

from __future__ import annotations

from edeliver.core.domain.config import Config
from edeliver.core.domain.config_parser import parse_config
from edeliver.core.domain.legacy import migrate
from edeliver.core.domain.legacy_variables import IGNORED

SOURCE = ".deliver/config"


def migrated(variables: dict[str, str]) -> tuple[Config, list[str]]:
    """The config the migration of `variables` writes, parsed back, and its notes."""
    migration = migrate(variables, [], SOURCE)
    return parse_config(migration.toml, "edeliver.toml"), migration.notes


def test_credentials_in_an_s3_release_store_are_not_carried_over() -> None:
    """An s3:// store URL with keys in it is left out of the file, and a note says why."""
    migration = migrate(
        {"APP": "hello", "RELEASE_STORE": "s3://AKIAXXXX@SECRET:bucket"}, [], SOURCE
    )
    assert "SECRET" not in migration.toml
    assert any("credentials in the URL is not carried over" in note for note in migration.notes)


def test_auto_version_becomes_build_metadata_and_unknown_parts_are_named() -> None:
    """AUTO_VERSION's parts map onto [build] auto_version; one 2.0 lacks gets its own line."""
    config, said = migrated(
        {"APP": "hello", "AUTO_VERSION": "commit-count+git-revision+branch-unless-master"}
    )
    assert config.build.auto_version == ("commit_count", "revision")
    assert any("ignored: AUTO_VERSION part 'branch-unless-master', because" in n for n in said)


def test_every_environment_prefix_becomes_an_environment() -> None:
    """BETA_HOSTS/BETA_USER and QA_NODES define environments like STAGING_ and PRODUCTION_."""
    config, _ = migrated(
        {
            "APP": "hello",
            "DELIVER_TO": "/opt",
            "BETA_HOSTS": "b1 b2",
            "BETA_USER": "beta",
            "QA_NODES": "qa@q1:/srv/qa",
        }
    )
    assert [(n.host, n.user, n.path) for n in config.nodes_of("beta")] == [
        ("b1", "beta", "/opt/hello"),
        ("b2", "beta", "/opt/hello"),
    ]
    assert [(n.host, n.user, n.path) for n in config.nodes_of("qa")] == [("q1", "qa", "/srv/qa")]


def test_every_1x_variable_not_mapped_is_named_with_the_reason() -> None:
    """Each variable 1.x read that 2.0 does not map gets one `ignored: NAME=…, because …` line."""
    _, said = migrated({"APP": "hello", **dict.fromkeys(IGNORED, "x")})
    for name in IGNORED:
        assert f"ignored: {name}='x', because {IGNORED[name]}" in said


def test_a_target_mix_env_becomes_the_builds_mix_env() -> None:
    """TARGET_MIX_ENV=staging builds with MIX_ENV=staging, as in 1.x."""
    config, said = migrated({"APP": "hello", "TARGET_MIX_ENV": "staging"})
    assert config.build.mix_env == "staging"
    assert not any("TARGET_MIX_ENV" in note for note in said)
