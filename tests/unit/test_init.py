"""`edeliver init`: a valid, commented config from mix.exs and --node/--env, never over a file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edeliver.adapters.local.config_file import load_config
from edeliver.cli.main import Runtime, app

runner = CliRunner()
MIX = """defmodule Ledger.MixProject do
  use Mix.Project
  def project, do: [app: :ledger, version: "0.3.1", elixir: "~> 1.14"]
end
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "mix.exs").write_text(MIX)
    return tmp_path


def init(project: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["init", *args], obj=Runtime(project=project))
    return result.exit_code, result.stdout, result.stderr


def test_init_writes_a_config_every_command_accepts_with_the_nodes_given(project: Path) -> None:
    """Nodes with and without user and port; one default environment holding them all."""
    code, out, _ = init(
        project,
        "--node", "web1=deploy@10.0.0.11:/opt/ledger",
        "--node", "web2=10.0.0.12:2222:/opt/ledger",
    )  # fmt: skip
    assert code == 0
    config = load_config(project)
    assert config.app == "ledger"
    web1, web2 = config.nodes_of("production")
    assert (web1.host, web1.port, web1.user) == ("10.0.0.11", None, "deploy")  # ssh config decides
    assert web1.path == "/opt/ledger"
    assert (web2.host, web2.port) == ("10.0.0.12", 2222)
    text = (project / ".deliver/edeliver.toml").read_text()
    assert "mix.exs version 0.3.1" in text
    assert "# " in text  # commented for the reader
    assert "edeliver nodes trust production" in out and "edeliver deploy production" in out


def test_init_groups_nodes_into_the_environments_named(project: Path) -> None:
    """--env NAME=NODE,... makes one environment per flag, in the order given."""
    code, _, _ = init(
        project,
        "--node", "a=h1:/srv/l", "--node", "b=h2:/srv/l", "--node", "c=h3:/srv/l",
        "--env", "staging=a", "--env", "prod=b,c",
    )  # fmt: skip
    assert code == 0
    config = load_config(project)
    assert [n.name for n in config.nodes_of("staging")] == ["a"]
    assert [n.name for n in config.nodes_of("prod")] == ["b", "c"]


def test_init_adds_what_edeliver_writes_to_gitignore_once(project: Path) -> None:
    """The store dir and the events database are ignored; a second init adds nothing again."""
    (project / ".gitignore").write_text("/_build\n")
    init(project, "--node", "a=h:/srv/l")
    init(project, "--node", "a=h:/srv/l", "--force")
    lines = (project / ".gitignore").read_text().splitlines()
    assert lines[0] == "/_build"
    assert lines.count(".deliver/releases/") == 1
    assert lines.count(".deliver/events.db*") == 1


def test_init_never_overwrites_a_config_without_force(project: Path) -> None:
    """An existing edeliver.toml is left byte for byte; exit 2 naming it and --force."""
    config = project / ".deliver/edeliver.toml"
    config.parent.mkdir()
    config.write_text("# mine\n")
    code, _, err = init(project, "--node", "a=h:/srv/l")
    assert code == 2
    assert ".deliver/edeliver.toml: already exists" in err and "--force" in err
    assert config.read_text() == "# mine\n"
    assert init(project, "--node", "a=h:/srv/l", "--force")[0] == 0
    assert load_config(project).app == "ledger"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--node", "web1=10.0.0.11"], "--node 'web1=10.0.0.11': expected NAME=[USER@]HOST"),
        (["--node", "a=h:70000:/srv"], "port 70000 is not between 1 and 65535"),
        (["--node", "a=h:/srv", "--env", "prod=a,b"], "--env 'prod=a,b': no --node named b"),
        (["--node", "a=h:/srv", "--env", "prod"], "--env 'prod': expected NAME=NODE"),
        ([], "no --node given"),
    ],
)
def test_bad_init_arguments_are_one_line_and_write_nothing(
    project: Path, args: list[str], expected: str
) -> None:
    """Exit 2, the argument at fault quoted, no .deliver/ created."""
    code, _, err = init(project, *args)
    assert code == 2
    assert expected in err and len(err.strip().splitlines()) == 1
    assert not (project / ".deliver").exists()


def test_init_outside_a_mix_project_names_the_mix_file(tmp_path: Path) -> None:
    """No mix.exs, or one without an app: one line naming the file, nothing written."""
    code, _, err = init(tmp_path, "--node", "a=h:/srv/l")
    assert code == 2 and f"{tmp_path / 'mix.exs'}: not found" in err
    (tmp_path / "mix.exs").write_text("defmodule X do end\n")
    code, _, err = init(tmp_path, "--node", "a=h:/srv/l")
    assert code == 2 and "no `app: :name`" in err
    assert not (tmp_path / ".deliver").exists()


def test_a_missing_config_points_to_init_and_migrate_config(tmp_path: Path) -> None:
    """Any command without a config says how to make one."""
    result = runner.invoke(app, ["plan", "prod"], obj=Runtime(project=tmp_path))
    assert result.exit_code == 2
    assert "`edeliver init`" in result.stderr and "migrate-config" in result.stderr
