"""edeliver 1.x's .deliver/config: read by bash itself, turned into edeliver.toml."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edeliver.adapters.config_file import load_config
from edeliver.adapters.legacy_config import read_legacy_config
from edeliver.cli.main import Runtime, app
from edeliver.core.errors import ConfigError

LEGACY = """\
APP="hello"
BUILD_HOST="build.example.com"
BUILD_USER="builder"
BUILD_AT="/tmp/edeliver/hello/builds"
STAGING_HOSTS="stage1.example.com stage2.example.com"
STAGING_USER="deploy"
TEST_AT="/srv/staging"
PRODUCTION_HOSTS="web1.example.com web2.example.com web3.example.com"
PRODUCTION_USER="deploy"
DELIVER_TO="/opt"
RELEASE_STORE=".deliver/releases"
# computed values work, since bash evaluates them
TARGET_MIX_ENV="$(echo prod)"

pre_erlang_get_and_update_deps() {
  echo linking secrets
}
post_extract_release_archive() { echo extracted; }
my_helper() { :; }
"""


def project(tmp_path: Path, text: str) -> Path:
    (tmp_path / ".deliver").mkdir()
    (tmp_path / ".deliver/config").write_text(text)
    return tmp_path


def test_bash_reads_the_variables_and_the_hook_functions(tmp_path: Path) -> None:
    variables, functions = read_legacy_config(project(tmp_path, LEGACY))
    assert variables["PRODUCTION_HOSTS"].split() == [
        "web1.example.com",
        "web2.example.com",
        "web3.example.com",
    ]
    assert variables["TARGET_MIX_ENV"] == "prod"
    assert {"pre_erlang_get_and_update_deps", "post_extract_release_archive", "my_helper"} <= set(
        functions
    )


def test_a_config_bash_cannot_source_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"\.deliver/config: bash cannot source it: .*syntax error"
    ):
        read_legacy_config(project(tmp_path, 'APP="hello"\nif then fi (\n'))


def test_migrate_config_writes_a_config_that_loads_and_lists_what_stays(tmp_path: Path) -> None:
    """The migrated file is a valid edeliver.toml with the same hosts, users and paths."""
    directory = project(tmp_path, LEGACY)
    result = CliRunner().invoke(app, ["migrate-config", "--write"], obj=Runtime(project=directory))
    assert result.exit_code == 0, result.output
    config = load_config(directory)
    production = config.nodes_of("production")
    assert [n.host for n in production] == [
        "web1.example.com",
        "web2.example.com",
        "web3.example.com",
    ]
    assert {(n.user, n.path) for n in production} == {("deploy", "/opt/hello")}
    assert {n.path for n in config.nodes_of("staging")} == {"/srv/staging/hello"}
    assert config.environment("production").policy.strategy == "one_for_all"
    assert config.store.url == ".deliver/releases" and config.app == "hello"
    assert "not carried over: BUILD_HOST='build.example.com'" in result.stderr
    assert "hook pre_erlang_get_and_update_deps: found" in result.stderr
    assert "my_helper" not in result.stderr
    again = CliRunner().invoke(app, ["migrate-config", "--write"], obj=Runtime(project=directory))
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_credentials_in_an_s3_release_store_are_not_carried_over(tmp_path: Path) -> None:
    directory = project(tmp_path, 'APP=hello\nRELEASE_STORE="s3://AKIAXXXX@SECRET:bucket"\n')
    result = CliRunner().invoke(app, ["migrate-config"], obj=Runtime(project=directory))
    assert result.exit_code == 0
    assert (
        "SECRET" not in result.stdout
        and "credentials in the URL is not carried over" in result.stderr
    )
