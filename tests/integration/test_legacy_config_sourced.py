"""edeliver 1.x's .deliver/config sourced by a real bash, and `migrate-config` writing what it read.

The mapping of the variables onto edeliver.toml is pure: tests/unit/test_legacy_config.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edeliver.adapters.local.config_file import load_config
from edeliver.adapters.local.legacy_config import read_legacy_config
from edeliver.cli.main import Runtime, app
from edeliver.core.domain.config import Config
from edeliver.core.domain.errors import ConfigError

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
    (tmp_path / ".deliver").mkdir(parents=True)
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
    assert config.build.strategy == "remote"
    assert config.build.host == "builder@build.example.com:/tmp/edeliver/hello/builds"
    assert "hook pre_erlang_get_and_update_deps: found" in result.stderr
    assert "my_helper" not in result.stderr
    again = CliRunner().invoke(app, ["migrate-config", "--write"], obj=Runtime(project=directory))
    assert again.exit_code == 2 and "already exists" in again.stderr


def migrated(tmp_path: Path, text: str) -> tuple[Config, str]:
    """The config `migrate-config --write` wrote for a legacy config, and what it said."""
    directory = project(tmp_path, text)
    result = CliRunner().invoke(app, ["migrate-config", "--write"], obj=Runtime(project=directory))
    assert result.exit_code == 0, result.output
    return load_config(directory), result.stderr


def test_several_build_hosts_are_refused_naming_the_variable(tmp_path: Path) -> None:
    """1.x built on one host; a BUILD_HOST list is one line naming BUILD_HOST, exit 2."""
    directory = project(tmp_path, 'APP=hello\nBUILD_HOST="b1 b2"\n')
    result = CliRunner().invoke(app, ["migrate-config"], obj=Runtime(project=directory))
    assert result.exit_code == 2
    assert ".deliver/config: BUILD_HOST: names several hosts" in result.stderr


def test_hosts_that_are_ssh_aliases_get_their_port_and_key_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An alias's Port and IdentityFile from ~/.ssh/config are written to its node, and said."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/config").write_text(
        "Host web1\n  HostName 10.1.1.1\n  Port 2201\n  IdentityFile ~/.ssh/web_key\n"
    )
    monkeypatch.setenv("HOME", str(home))
    config, said = migrated(
        tmp_path / "p", 'APP=hello\nDELIVER_TO=/opt\nPRODUCTION_HOSTS="web1 web2"\n'
    )
    web1, web2 = config.nodes_of("production")
    assert (web1.host, web1.port, web1.identity_file) == ("web1", 2201, "~/.ssh/web_key")
    assert (web2.port, web2.identity_file) == (None, None)
    assert (
        "node production1: port 2201 and identity_file ~/.ssh/web_key from Host web1 of "
        f"{home}/.ssh/config"
    ) in said
