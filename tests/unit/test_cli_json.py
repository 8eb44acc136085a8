"""--json: every document carries its schema version; errors are documents of a stable shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from edeliver.cli.main import app
from edeliver.cli.output import SCHEMA
from edeliver.core.domain import errors
from tests.support.cli_world import World, crash_deploy

runner = CliRunner()


def _documents(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("plan prod", "batches"),
        ("deploy prod --version 2.0.0", "nodes"),
        ("history", "deployments"),
        ("history prod", "deployments"),
        ("log", "event"),
        ("tasks prod", "stages"),
        ("status prod", "nodes"),
        ("releases", "releases"),
        ("releases prune --keep 1 --dry-run", "removed"),
    ],
)
def test_every_json_output_starts_with_its_schema_version(
    tmp_path: Path, line: str, key: str
) -> None:
    """Each document, and each line of `log --json`, is an object with `schema` first."""
    world = World(tmp_path)
    assert world.run("deploy", "prod", "--version", "1.0.0").exit_code == 0
    result = world.run(*line.split(), "--json")
    assert result.exit_code == 0, result.output
    documents = _documents(result.stdout)
    assert documents
    for document in documents:
        assert next(iter(document.items())) == ("schema", SCHEMA)
        assert key in document


def test_an_error_with_json_is_a_document_on_stdout_and_a_line_on_stderr(
    tmp_path: Path,
) -> None:
    """An unknown environment with --json: the error's code, message and exit as JSON."""
    result = World(tmp_path).run("plan", "nowhere", "--json")
    assert result.exit_code == 2
    (document,) = _documents(result.stdout)
    assert document == {
        "schema": SCHEMA,
        "error": {"code": "not_found", "message": result.stderr[10:-1], "exit": 2},
    }
    assert result.stderr.startswith("edeliver: ") and "'nowhere'" in result.stderr


def test_a_config_error_names_its_file_and_key_in_the_document(tmp_path: Path) -> None:
    """A config error's document has `file` and `key` besides the message."""
    world = World(tmp_path)
    config = tmp_path / ".deliver/edeliver.toml"
    config.write_text(config.read_text().replace('strategy = "one_for_all"', 'strategy = "x"'))
    result = world.run("deploy", "prod", "--json")
    assert result.exit_code == 2
    error = _documents(result.stdout)[0]["error"]
    assert (error["code"], error["key"], error["exit"]) == (
        "config",
        "environments.prod.strategy",
        2,
    )
    assert error["file"].endswith("edeliver.toml")


def test_a_held_lock_is_refused_as_a_document_with_exit_3(tmp_path: Path) -> None:
    """A deploy refused by the lock another deployment holds: code lock_held, exit 3."""
    world = World(tmp_path)
    crash_deploy(world, after=4)
    result = world.run("deploy", "prod", "--version", "2.0.0", "--json")
    assert result.exit_code == 3
    error = _documents(result.stdout)[0]["error"]
    assert (error["code"], error["exit"]) == ("lock_held", 3)
    assert "is locked by deployment" in error["message"]


def _json_commands(group: Any, words: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command of the typer app that takes --json, found by walking it."""
    click_group = typer.main.get_command(app) if group is None else group
    found = []
    for name, command in getattr(click_group, "commands", {}).items():
        path = (*words, name)
        if any("--json" in getattr(p, "opts", ()) for p in command.params):
            found.append(path)
        found += _json_commands(command, path)
    return found


JSON_COMMANDS = _json_commands(None)


def test_the_walk_finds_the_json_commands() -> None:
    """The walk of the app sees nested commands too (a broken walk would test nothing)."""
    assert {("deploy",), ("build", "upgrade"), ("releases", "prune"), ("log",)} <= set(
        JSON_COMMANDS
    )


@pytest.mark.parametrize("command", JSON_COMMANDS, ids=" ".join)
def test_a_usage_error_with_json_is_a_document_too(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """A flag the command does not take, given with --json: a usage document, exit 2."""
    result = runner.invoke(app, ["-C", str(tmp_path), *command, "--bogus", "--json"])
    assert result.exit_code == 2
    (document,) = _documents(result.stdout)
    assert document["schema"] == SCHEMA
    assert (document["error"]["code"], document["error"]["exit"]) == ("usage", 2)
    assert "--bogus" in document["error"]["message"]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.EdeliverError("x"), "edeliver"),
        (errors.UsageError("x"), "usage"),
        (errors.ConfigError("f", "k", "x"), "config"),
        (errors.NotFoundError("x"), "not_found"),
        (errors.LockHeldError("x"), "lock_held"),
        (errors.NotUniformError("x"), "not_uniform"),
        (errors.HostKeyChanged("x"), "host_key_changed"),
        (errors.DeploymentInterrupted("x"), "deployment_interrupted"),
        (errors.EventStoreError("x"), "event_store"),
        (errors.NodeUnreachable("x"), "node_unreachable"),
        (errors.StepTimeout("x"), "step_timeout"),
    ],
)
def test_error_codes_are_the_class_names_in_snake_case(
    error: errors.EdeliverError, code: str
) -> None:
    """The codes documented in docs/cli.md."""
    assert errors.error_code(error) == code


def test_ctrl_c_with_json_is_an_interrupted_document_exit_130(tmp_path: Path) -> None:
    """Ctrl-C outside a rollout, with --json: code interrupted, exit 130, on stdout too."""
    from edeliver.cli.main import Runtime

    def interrupted(project: Path) -> Any:
        raise KeyboardInterrupt

    runtime = Runtime(project=tmp_path, load_config=interrupted)
    result = runner.invoke(app, ["status", "prod", "--json"], obj=runtime)
    assert result.exit_code == 130
    error = _documents(result.stdout)[0]["error"]
    assert (error["code"], error["exit"]) == ("interrupted", 130)
