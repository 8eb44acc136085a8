"""Every mistake of edeliver.toml in one run, with "did you mean"; its JSON Schema for editors."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from edeliver.adapters.local.project_init import MixProject, NodeSpec, render_config
from edeliver.cli.main import app
from edeliver.core.domain.config_keys import json_schema
from edeliver.core.domain.config_parser import parse_config
from edeliver.core.domain.errors import ConfigError, ConfigErrors
from tests.unit.test_config import VALID

FILE = ".deliver/edeliver.toml"
THREE_MISTAKES = """
app = "hello"
[nodes.web1]
host = "10.0.0.1"
port = "22"
path = "/opt/hello"
[environments.prod]
nodes = ["web1"]
strategy = "one_for_al"
max_paralel = 2
"""
SHIPPED_SCHEMA = Path(__file__).parents[2] / "docs/edeliver.schema.json"
runner = CliRunner()


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, FILE)
    error = raised.value
    return [str(p) for p in error.problems] if isinstance(error, ConfigErrors) else [str(error)]


def test_three_mistakes_are_three_problems_in_one_reading() -> None:
    """A wrong type, a misspelt key and a misspelt value: each named with file and key path."""
    assert sorted(_problems(THREE_MISTAKES)) == [
        f"{FILE}: environments.prod.max_paralel: unknown key; did you mean 'max_parallel'?",
        f"{FILE}: environments.prod.strategy: expected one of one_for_one | rest_for_one | "
        "one_for_all, got 'one_for_al'; did you mean 'one_for_all'?",
        f"{FILE}: nodes.web1.port: expected a port number 1-65535, got '22'",
    ]


def test_three_mistakes_are_three_lines_of_one_run_exit_2(tmp_path: Path) -> None:
    """The command line prints each problem on its own `edeliver:` line, exit 2."""
    (tmp_path / ".deliver").mkdir()
    (tmp_path / FILE).write_text(THREE_MISTAKES)
    result = runner.invoke(app, ["-C", str(tmp_path), "plan", "prod"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all(
        line.startswith(f"edeliver: {tmp_path}/{FILE}: ") for line in lines
    )
    assert {line.split(": ")[2] for line in lines} == {
        "nodes.web1.port", "environments.prod.max_paralel", "environments.prod.strategy",
    }  # fmt: skip


def test_a_single_mistake_is_the_one_error_it_was() -> None:
    """One problem stays a plain ConfigError: its message unchanged."""
    (line,) = _problems(VALID.replace('strategy = "rest_for_one"', 'strategy = "x"'))
    assert line.startswith(f"{FILE}: environments.prod.strategy: expected one of")


def test_mistakes_in_separate_tables_are_all_found() -> None:
    """A broken store, a broken build and a node without a path do not hide each other."""
    text = (
        VALID.replace('url = "s3://releases-bucket/hello"', 'url = "ftp://x"')
        .replace('strategy = "local"', 'strategy = "remote"')
        .replace('path = "/opt/hello"\nlabels = ["staging"]', 'labels = ["staging"]')
    )
    keys = [line.split(": ")[1] for line in _problems(text)]
    assert keys == ["store.url", "build.host", "nodes.stage1.path"]


def test_a_misspelt_node_in_an_environment_suggests_the_node() -> None:
    """`nodes = ["stage2"]` when stage1 exists: not defined, did you mean stage1."""
    text = VALID.replace('nodes = ["stage1"]', 'nodes = ["stage2"]')
    (line,) = _problems(text)
    assert line.endswith("node 'stage2' is not defined under [nodes]; did you mean 'stage1'?")


def test_a_node_with_problems_is_not_blamed_again_on_its_environment() -> None:
    """A node missing its path is one problem, not also `not defined` in every environment."""
    text = VALID.replace('path = "/opt/hello"\nlabels = ["staging"]', 'labels = ["staging"]')
    assert _problems(text) == [
        f"{FILE}: nodes.stage1.path: missing; expected an absolute deploy path"
    ]


def test_a_misspelt_environment_on_the_command_line_suggests_the_right_one(tmp_path: Path) -> None:
    """`plan prdo` names what is defined and the close one."""
    (tmp_path / ".deliver").mkdir()
    (tmp_path / FILE).write_text(VALID)
    result = runner.invoke(app, ["-C", str(tmp_path), "plan", "prdo"])
    assert result.exit_code == 2
    assert result.stderr.rstrip().endswith(
        "no environment 'prdo' (defined: prod, staging); did you mean 'prod'?"
    )


def test_the_schema_accepts_valid_configs() -> None:
    """The tests' valid config and one `edeliver init` writes validate against the schema."""
    written = render_config(
        MixProject("hello", "0.1.0"), [NodeSpec("web1", "10.0.0.1", "/opt/hello", "deploy", 22)],
        {"production": ["web1"]},
    )  # fmt: skip
    for text in (VALID, written):
        jsonschema.validate(tomllib.loads(text), json_schema())


@pytest.mark.parametrize(
    ("mistake", "where"),
    [
        ("max_paralel = 2", "max_paralel"),
        ('strategy = "one_for_al"', "one_for_al"),
        ("max_parallel = 0", "0"),
        ("step_timeout = 0", "0"),
        ('cookie = "plain"', "plain"),
        ('migrate = "migrate"', "migrate"),
        ('env = { "BAD-NAME" = "x" }', "BAD-NAME"),
        ('env = { X = { from_env = "A", from_file = "b" } }', "from_env"),
    ],
)
def test_the_schema_rejects_what_the_parser_rejects(mistake: str, where: str) -> None:
    """An unknown key, an unknown choice, a bound crossed, a runtime setting of the wrong shape:
    editors flag what edeliver refuses."""
    text = VALID.replace("[environments.staging]", f"[environments.staging]\n{mistake}")
    with pytest.raises(jsonschema.ValidationError) as raised:
        jsonschema.validate(tomllib.loads(text), json_schema())
    assert where in raised.value.message
    assert _problems(text)


NODE_SETTINGS = "env = { POOL_SIZE = 10 }"
ENVIRONMENT_SETTINGS = """migrate = "Hello.Release.migrate"
cookie = { from_env = "HELLO_COOKIE" }
env = { PHX_SERVER = true, SECRET_KEY_BASE = { from_env = "SKB" }, DB_URL = { from_file = "db" } }
"""


def _with_runtime_settings(text: str) -> str:
    """VALID with env tables, a cookie, migrate and redact."""
    text = text.replace('path = "/opt/hello"', f'path = "/opt/hello"\n{NODE_SETTINGS}', 1)
    text = text.replace("[environments.staging]", f"[environments.staging]\n{ENVIRONMENT_SETTINGS}")
    return 'redact = ["PARTNER_API_URL"]\n' + text


def test_the_schema_accepts_the_runtime_settings() -> None:
    """env tables (plain values, from_env, from_file), the cookie, migrate and redact are
    declared keys: the parser and the schema both take them."""
    text = _with_runtime_settings(VALID)
    config = parse_config(text, FILE)
    assert (config.redact, config.environment("staging").migrate) == (
        ("PARTNER_API_URL",), "Hello.Release.migrate",
    )  # fmt: skip
    jsonschema.validate(tomllib.loads(text), json_schema())


def test_a_bad_env_table_is_one_problem_among_the_others() -> None:
    """An env setting's problem is recorded like any key's: the environment's other mistakes
    are found in the same reading."""
    text = THREE_MISTAKES.replace("max_paralel = 2", 'max_paralel = 2\nenv = { DB_PASSWORD = "x" }')
    problems = _problems(text)
    assert len(problems) == 4
    assert any("environments.prod.env.DB_PASSWORD: DB_PASSWORD looks like a secret" in p
               for p in problems)  # fmt: skip


def test_config_schema_prints_the_shipped_schema() -> None:
    """`edeliver config schema` prints what docs/edeliver.schema.json holds (kept in step)."""
    result = runner.invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json.loads(SHIPPED_SCHEMA.read_text()) == json_schema()
    jsonschema.Draft7Validator.check_schema(json_schema())


def test_config_check_says_valid_or_lists_every_problem(tmp_path: Path) -> None:
    """`config check`: one line and exit 0 when valid; all problems and exit 2 when not."""
    (tmp_path / ".deliver").mkdir()
    (tmp_path / FILE).write_text(VALID)
    valid = runner.invoke(app, ["-C", str(tmp_path), "config", "check", "--json"])
    assert valid.exit_code == 0
    assert json.loads(valid.stdout)["environments"] == ["prod", "staging"]
    (tmp_path / FILE).write_text(THREE_MISTAKES)
    broken = runner.invoke(app, ["-C", str(tmp_path), "config", "check", "--json"])
    assert broken.exit_code == 2
    error = json.loads(broken.stdout)["error"]
    assert error["code"] == "config" and len(error["problems"]) == 3
