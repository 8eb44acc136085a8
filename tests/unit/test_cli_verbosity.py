"""-v, -vv and -q: one option on the root, anywhere on the line, through one Output object."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edeliver.adapters.node.runtime_env_files import write_script
from edeliver.adapters.node.ssh_output import log_script
from edeliver.cli.app import project_option_first
from edeliver.cli.composition import Runtime
from edeliver.cli.output import SCRIPTS_TOO, Output, StepLines
from edeliver.core.domain.config_parser import parse_config
from edeliver.core.domain.redaction import Redactor
from edeliver.core.domain.runtime_env import NodeRuntime
from tests.support.cli_world import World
from tests.unit.test_runtime_env import FILE, NODES


@pytest.mark.parametrize(
    ("args", "moved"),
    [
        ("deploy prod -v", "-v deploy prod"),
        ("deploy prod -vv --version 1", "-vv deploy prod --version 1"),
        ("status prod -q -C /p", "-q -C /p status prod"),
        ("log --verbose", "--verbose log"),
        ("deploy prod --version 1", "deploy prod --version 1"),
        ("demo -- -v", "demo -- -v"),
    ],
)
def test_verbosity_flags_are_moved_before_the_command(args: str, moved: str) -> None:
    """-v, -vv, -q stand anywhere; `--version V` of deploy and what follows `--` stay put."""
    assert project_option_first(args.split()) == moved.split()


def test_minus_v_prints_each_node_step_with_its_timing_on_stderr(tmp_path: Path) -> None:
    """A -v deploy says every transition of every node with how long the state it left
    lasted, on stderr, while stdout keeps the result table."""
    result = World(tmp_path).run("deploy", "prod", "--version", "2.0.0", "-v")
    assert result.exit_code == 0, result.output
    for node in ("n0", "n1", "n2"):
        for src, trigger in (("preparing", "prepared"), ("verifying", "verified")):
            pattern = rf"^{node}: {src} -{trigger}-> \S+ \({src} took \d+\.\d\ds\)$"
            assert re.search(pattern, result.stderr, re.MULTILINE), result.stderr
    assert "succeeded" in result.stdout and "took" not in result.stdout


def test_minus_v_with_json_keeps_stdout_one_json_document(tmp_path: Path) -> None:
    """Steps go to stderr, so `--json -v` still gives programs one document on stdout."""
    result = World(tmp_path).run("-v", "deploy", "prod", "--version", "2.0.0", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outcome"] == "succeeded"
    assert "-activated->" in result.stderr


def test_minus_q_prints_only_the_final_line(tmp_path: Path) -> None:
    """A quiet deploy prints its outcome in one line and nothing on stderr."""
    world = World(tmp_path)
    world.task_file("10_note.sh", "#!/bin/sh\n# stage: post_extract_release_archive\necho hi\n")
    result = world.run("deploy", "prod", "--version", "2.0.0", "--include", "nothing", "-q")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"hello 2\.0\.0 → prod: succeeded \([0-9a-f]{8}\)\n", result.stdout)
    assert result.stderr == ""  # not even the warning that no task is tagged `nothing`


def test_minus_q_still_says_errors(tmp_path: Path) -> None:
    """-q keeps the one error line and its exit code."""
    result = World(tmp_path).run("-q", "deploy", "prod", "--version", "9.9.9")
    assert result.exit_code == 2
    assert result.stderr.startswith("edeliver: version 9.9.9 of hello is not in the store")


def test_minus_v_and_minus_q_together_are_a_usage_error(tmp_path: Path) -> None:
    """Asking for more and for less at once: one line, exit 2, nothing run."""
    result = World(tmp_path).run("deploy", "prod", "-v", "-q")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "give -v or -q, not both" in result.stderr
    assert not (tmp_path / ".deliver/events.db").exists()


def test_minus_vv_prints_each_script_with_its_secrets_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A script logged by an SSH adapter is printed line by line, prefixed by its node, with
    secret values and URL passwords masked."""
    output = Output(SCRIPTS_TOO, redact=Redactor(["tok-0123456789"]))
    with output.showing_scripts():
        log_script("web1", "export TOKEN=tok-0123456789\npsql postgresql://app:pw-secret@db/x")
    log_script("web1", "after: not shown")
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "web1: sends a script:",
        "  web1 | export TOKEN=[redacted]",
        "  web1 | psql postgresql://app:[redacted]@db/x",
    ]


def test_minus_v_shows_no_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    """Scripts are -vv's: at -v nothing is printed for them."""
    with Output(1).showing_scripts():
        log_script("web1", "echo hi")
    assert capsys.readouterr().err == ""


def test_task_runs_are_timed_from_their_start(capsys: pytest.CaptureFixture[str]) -> None:
    """A task's line at -v says how long it ran, measured between its two events."""
    ticks = iter([0.0, 1.0, 3.5])

    class Event:
        def __init__(self, **fields: object) -> None:
            vars(self).update(fields)

    class TaskStarted(Event): ...

    class TaskRan(Event): ...

    lines = StepLines(Output(1, clock=lambda: next(ticks)))
    task = {"node": "web1", "stage": "post_start", "task": "warm"}
    lines([TaskStarted(**task, timeout=None)])
    lines([TaskRan(**task, outcome="ok", critical=True, output="")])
    assert capsys.readouterr().err.splitlines() == [
        "web1: task warm at post_start started",
        "web1: task warm at post_start: ok (2.50s)",
    ]


def test_minus_vv_masks_the_secrets_the_config_names_once_it_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A `from_env` secret under a name that looks harmless is masked in printed scripts as
    soon as the command has read its config, like the secret-looking names always are."""
    monkeypatch.setenv("PROD_DB_DSN", "host=db user=shop password=hunter2-db")
    env = '[environments.prod.env]\nDATABASE_DSN = { from_env = "PROD_DB_DSN" }\n'
    text = NODES + '[environments.prod]\nnodes = ["web1"]\n' + env
    runtime = Runtime(
        load_config=lambda _project: parse_config(text, FILE), output=Output(SCRIPTS_TOO)
    )
    line = "export DATABASE_DSN='host=db user=shop password=hunter2-db'"
    assert "hunter2-db" in runtime.output.redact(line)  # not yet known to be a secret
    assert runtime.config.environment("prod").name == "prod"  # the command reads its config
    assert "hunter2-db" not in runtime.output.redact(line)


def test_minus_vv_shows_that_runtime_settings_are_written_not_their_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The script writing a node's settings carries the cookie (maybe generated, so known to
    no redactor) and deployer secrets in here-documents: -vv prints the script without them."""
    runtime = NodeRuntime(values=(("PHX_HOST", "shop.example"),), files=())
    with Output(SCRIPTS_TOO).showing_scripts():
        log_script("web1", write_script("/opt/shop", runtime, "c00kie-generated-xyz"))
    err = capsys.readouterr().err
    assert "c00kie-generated-xyz" not in err and "shop.example" not in err
    assert err.count("[not shown: secrets]") == 2 and "mv -f" in err
