"""Command-line conventions: --version, -C anywhere and EDELIVER_PROJECT, Ctrl-C's exit code."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.table import Table
from typer.testing import CliRunner

from edeliver.cli.app import project_option_first
from edeliver.cli.main import Runtime, app
from edeliver.cli.output import SCHEMA
from edeliver.core.domain.config import Config
from tests.support.simulation import config_text

runner = CliRunner()


def test_version_prints_the_installed_package_version() -> None:
    """`edeliver --version` prints the version importlib.metadata knows, and exits 0."""
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"edeliver {version('edeliver')}"


@pytest.mark.parametrize(
    ("args", "moved"),
    [
        ("history -C /p", "-C /p history"),
        ("nodes trust prod --project /p", "--project /p nodes trust prod"),
        ("deploy prod --project=/p --version 1", "--project=/p deploy prod --version 1"),
        ("log -C/p", "-C/p log"),
        ("-C /p history", "-C /p history"),
        ("demo -- -C x", "demo -- -C x"),
    ],
)
def test_the_project_option_is_moved_before_the_command(args: str, moved: str) -> None:
    """-C DIR in any spelling goes to the front; after `--` it is someone else's argument."""
    assert project_option_first(args.split()) == moved.split()


@pytest.mark.parametrize(
    "args",
    [
        ["-C", "{p}", "status", "prod"],
        ["status", "prod", "-C", "{p}"],
        ["status", "-C", "{p}", "prod"],
        ["nodes", "trust", "prod", "--project={p}"],
    ],
)
def test_the_project_directory_may_be_given_anywhere_on_the_line(
    tmp_path: Path, args: list[str]
) -> None:
    """Wherever -C stands, the command reads that directory's config (here: names it missing)."""
    project = tmp_path / "app"
    result = runner.invoke(app, [a.format(p=project) for a in args])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"edeliver: {project}/.deliver/edeliver.toml: not found")


def test_edeliver_project_is_the_default_and_minus_c_wins_over_it(tmp_path: Path) -> None:
    """EDELIVER_PROJECT names the project when -C does not; -C given wins."""
    from_env = runner.invoke(app, ["status", "prod"], env={"EDELIVER_PROJECT": str(tmp_path)})
    assert from_env.stderr.startswith(f"edeliver: {tmp_path}/.deliver/edeliver.toml")
    other = tmp_path / "other"
    given = runner.invoke(
        app, ["status", "prod", "-C", str(other)], env={"EDELIVER_PROJECT": str(tmp_path)}
    )
    assert given.stderr.startswith(f"edeliver: {other}/.deliver/edeliver.toml")


def test_ctrl_c_outside_a_rollout_exits_130_in_one_line(tmp_path: Path) -> None:
    """Ctrl-C while a command reads its config (nothing recorded) exits 130, not 4, in one line."""

    def interrupted(project: Path) -> Config:
        raise KeyboardInterrupt

    runtime = Runtime(project=tmp_path, load_config=interrupted)
    result = runner.invoke(app, ["status", "prod"], obj=runtime)
    assert result.exit_code == 130
    assert result.stderr.startswith("edeliver: interrupted;")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def _help(*words: str) -> str:
    result = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_root_help_groups_commands_by_workflow_in_order() -> None:
    """`edeliver --help` shows set-up, build, deploy, audit and demo panels, each command once."""
    text = _help()
    panels = ["Set up", "Build", "Deploy", "Audit", "Try it"]
    at = [text.index(f"─ {panel} ") for panel in panels]
    assert at == sorted(at)
    commands = [*WORKFLOW]
    where = [text.index(f"│ {command} ") for command in commands]
    assert where == sorted(where)


WORKFLOW = (
    "init", "config", "nodes", "migrate-config", "tasks", "build", "releases", "plan", "deploy",
    "upgrade", "rollback", "resume", "status", "log", "history", "abandon", "demo",
)  # fmt: skip


def _walk(command: Any, words: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group below `command`, as the words that name it: a command added
    anywhere in the app is checked here without being listed."""
    found = []
    for name, sub in getattr(command, "commands", {}).items():
        found += [(*words, name), *_walk(sub, (*words, name))]
    return found


ROOT = typer.main.get_command(app)
COMMANDS = tuple(_walk(ROOT))
GROUPS_WITHOUT_ACTION = {("nodes",), ("config",)}  # `--help` only; their commands act
LEAVES = tuple(c for c in COMMANDS if c not in GROUPS_WITHOUT_ACTION)


def test_the_walk_finds_commands_and_subcommands() -> None:
    """A walk that found nothing would check nothing."""
    assert {("deploy",), ("build", "upgrade"), ("releases", "prune"), ("config", "schema")} <= (
        set(COMMANDS)
    )


def test_every_command_sits_in_a_workflow_panel() -> None:
    """No top-level command falls into typer's catch-all panel: each is in a workflow group."""
    for name, command in ROOT.commands.items():  # type: ignore[attr-defined]
        assert getattr(command, "rich_help_panel", None), f"{name} has no help panel"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_each_command_help_ends_with_an_example_and_shows_no_type_labels(
    command: tuple[str, ...],
) -> None:
    """Every command's help has an `Example: edeliver <the command> …` line, no `<bool>`."""
    text = _help(*command)
    assert f"Example: edeliver {' '.join(command)}" in text
    for label in ("<bool>", "<str>", "<int>", "<path>", "<list", "<float>"):
        assert label not in text


def test_the_root_help_shows_no_type_labels_either() -> None:
    """The root's own options (-v, completion) carry no `<bool>` or VERBOSE label."""
    text = _help()
    for label in ("<bool>", "<int>", "VERBOSE"):
        assert label not in text


@pytest.mark.parametrize("command", LEAVES, ids=" ".join)
def test_every_command_refuses_an_unknown_flag_in_one_line(
    project: Path, command: tuple[str, ...]
) -> None:
    """An unknown flag on any command found by the walk: one line, exit 2, nothing created."""
    result = runner.invoke(app, ["-C", str(project), *command, "--no-such-flag"])
    assert "--no-such-flag" in _one_error_line(result, 2)
    assert sorted(p.name for p in (project / ".deliver").iterdir()) == ["edeliver.toml"]


def test_shell_completion_completes_commands_and_options() -> None:
    """The completion script typer installs asks the app itself: `dep` completes to deploy."""

    def complete(words: str) -> str:
        env = {"_EDELIVER_COMPLETE": "complete_bash", "COMP_WORDS": words}
        env["COMP_CWORD"] = str(len(words.split()) - 1)
        result = runner.invoke(app, [], env=env, prog_name="edeliver")
        assert result.exit_code == 0
        return str(result.stdout)

    assert complete("edeliver dep").split() == ["deploy"]
    assert "--version" in complete("edeliver deploy prod --ver").split()


def test_show_completion_prints_the_script_to_install() -> None:
    """`--show-completion bash` prints the script `--install-completion` would install."""
    result = runner.invoke(app, ["--show-completion", "bash"], prog_name="edeliver")
    assert result.exit_code == 0
    assert "_EDELIVER_COMPLETE=complete_bash" in result.stdout


def test_build_upgrade_help_is_its_own() -> None:
    """`build upgrade --help` describes the hot-upgrade package and its --from/--to options."""
    text = _help("build", "upgrade")
    assert "Usage: edeliver build upgrade" in text
    assert "hot-upgrade package" in text
    assert "--from" in text
    assert "--from" not in _help("build")


def test_include_exclude_and_only_say_different_things() -> None:
    """The three tag options of deploy each have their own help text."""
    text = _help("deploy")
    lines = {
        option: next(line for line in text.splitlines() if line.startswith(f"│ {option} "))
        for option in ("--include", "--exclude", "--only")
    }
    helps = {line.split("TAG", 1)[1].strip(" │") for line in lines.values()}
    assert len(helps) == 3


def test_tables_are_not_cut_to_80_columns_in_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a terminal, rich renders as wide as COLUMNS says, else far wider than 80."""
    monkeypatch.delenv("COLUMNS", raising=False)
    wide = Runtime().out()
    table = Table("deployment", "environment")
    table.add_row("3f2a9c1e-" + "x" * 60, "production-eu-west-" + "y" * 60)
    with wide.capture() as captured:
        wide.print(table)
    assert "x" * 60 in captured.get() and "y" * 60 in captured.get()
    monkeypatch.setenv("COLUMNS", "120")
    assert Runtime().out().width == 120


@pytest.mark.parametrize("command", [["history"], ["log"], ["log", "--json"], ["history", "prod"]])
def test_reading_a_missing_project_directory_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    """A mistyped -C is one line naming the directory, exit 2, and the directory stays absent."""
    typo = tmp_path / "typo" / "dir"
    result = runner.invoke(app, ["-C", str(typo), *command])
    assert result.exit_code == 2
    assert result.stderr == f"edeliver: {typo}: no such project directory (-C, EDELIVER_PROJECT)\n"
    assert not (tmp_path / "typo").exists()


def test_log_and_history_agree_that_nothing_yet_is_an_empty_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any deployment both exit 0 with nothing listed, and no events db is created."""
    monkeypatch.delenv("EDELIVER_EVENTS", raising=False)
    history = runner.invoke(app, ["-C", str(tmp_path), "history", "--json"])
    log = runner.invoke(app, ["-C", str(tmp_path), "log", "--json"])
    assert history.exit_code == 0
    assert json.loads(history.stdout) == {"schema": SCHEMA, "deployments": []}
    assert (log.exit_code, log.stdout) == (0, "")
    assert log.stderr == "no deployment recorded yet\n"
    assert list(tmp_path.iterdir()) == []


def test_log_of_an_unknown_deployment_before_any_is_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`log ID` with nothing recorded names the id, exit 2, and creates no store."""
    monkeypatch.delenv("EDELIVER_EVENTS", raising=False)
    result = runner.invoke(app, ["-C", str(tmp_path), "log", "3f2a9c1e"])
    assert result.exit_code == 2
    assert result.stderr == "edeliver: deployment 3f2a9c1e: not found, none recorded yet\n"
    assert list(tmp_path.iterdir()) == []


def test_an_empty_store_lists_nothing_with_exit_0_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that exists but holds no deployment: `log` and `history` still exit 0."""
    from edeliver.adapters.events.event_store import open_deployments

    monkeypatch.delenv("EDELIVER_EVENTS", raising=False)
    open_deployments(tmp_path, "").close()
    assert runner.invoke(app, ["-C", str(tmp_path), "log"]).exit_code == 0
    history = runner.invoke(app, ["-C", str(tmp_path), "history", "--json"])
    assert json.loads(history.stdout)["deployments"] == []


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with a valid config for the environment prod, nothing recorded."""
    monkeypatch.delenv("EDELIVER_EVENTS", raising=False)
    (tmp_path / ".deliver").mkdir()
    (tmp_path / ".deliver/edeliver.toml").write_text(config_text(3))
    return tmp_path


def _one_error_line(result: Any, code: int) -> str:
    """The command exited `code` with one `edeliver:` line on stderr and no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edeliver: "), result.stderr
    return str(lines[0])


UNKNOWN_ENVIRONMENT = (
    "tasks nowhere", "nodes trust nowhere", "build upgrade -e nowhere", "plan nowhere",
    "deploy nowhere", "upgrade nowhere", "rollback nowhere", "status nowhere",
)  # fmt: skip
RECORDS = ("deploy", "upgrade", "rollback")  # may open the events database before refusing


@pytest.mark.parametrize("line", UNKNOWN_ENVIRONMENT)
def test_an_unknown_environment_is_one_line_naming_it_exit_2(project: Path, line: str) -> None:
    """Every command taking an environment names the unknown one, exit 2; those that record
    nothing create nothing."""
    result = runner.invoke(app, ["-C", str(project), *line.split()])
    assert "nowhere" in _one_error_line(result, 2)
    created = {p.name for p in (project / ".deliver").iterdir()} - {"edeliver.toml"}
    assert created <= ({"events.db"} if line.split(maxsplit=1)[0] in RECORDS else set())


NEEDS_CONFIG = (
    "tasks prod", "nodes trust prod", "build", "build upgrade", "releases",
    "releases prune --keep 2", "plan prod", "deploy prod", "upgrade prod", "rollback prod",
    "status prod",
)  # fmt: skip


@pytest.mark.parametrize("line", NEEDS_CONFIG)
def test_a_missing_config_is_one_line_naming_the_file_exit_2(tmp_path: Path, line: str) -> None:
    """Without .deliver/edeliver.toml every command that needs it names the file, exit 2."""
    result = runner.invoke(app, ["-C", str(tmp_path), *line.split()])
    assert f"{tmp_path}/.deliver/edeliver.toml: not found" in _one_error_line(result, 2)
    assert list(tmp_path.iterdir()) == []


BAD_FLAGS = (
    "init --node web1", "nodes trust", "migrate-config --write=maybe", "tasks prod --bogus",
    "build --bogus", "build upgrade --from", "releases --bogus", "releases prune --keep 0",
    "plan", "deploy prod --version", "upgrade prod --only", "rollback prod --to",
    "resume --bogus", "status", "log --follow=2", "history --bogus", "abandon x",
    "demo --nodes 0", "nodes nothing", "no-such-command",
)  # fmt: skip


@pytest.mark.parametrize("line", BAD_FLAGS)
def test_a_bad_flag_or_value_is_one_line_exit_2(project: Path, line: str) -> None:
    """A flag, value or argument the command does not take: one line, exit 2, nothing created."""
    result = runner.invoke(app, ["-C", str(project), *line.split()])
    _one_error_line(result, 2)
    assert sorted(p.name for p in (project / ".deliver").iterdir()) == ["edeliver.toml"]


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=lambda c: " ".join(c) or "-")
def test_every_command_has_help_without_traceback(command: tuple[str, ...]) -> None:
    """`--help` exits 0 on every command and group, says how to use it, writes no stderr."""
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage: edeliver" in result.stdout and result.stderr == ""
