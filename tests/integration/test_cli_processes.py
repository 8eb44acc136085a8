"""The CLI as real processes (`python -m edeliver.cli`): signals, pipes, following a log as it
grows, an event store that cannot be reached. The in-process CLI tests are in tests/unit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edeliver.cli.composition import Runtime
from edeliver.cli.main import app
from tests.support.cli_world import World, crash_deploy
from tests.support.waiting import wait_for

runner = CliRunner()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_log_follow_prints_events_as_they_are_stored_until_the_end(world: World) -> None:
    """`log --follow` in another process keeps printing until the deployment finishes."""
    crash_deploy(world, after=5)
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edeliver.cli",
            "-C",
            str(world.project),
            "log",
            "--follow",
            "--json",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "EDELIVER_EVENTS": ""},
    )
    stored = len(world.run("log", "--json").output.splitlines())
    printed = lines_of(follower)
    wait_for(lambda: len(printed) >= stored, 30, f"the follower printing the {stored} events")
    assert follower.poll() is None, "it must wait while the deployment is unfinished"
    assert world.run("resume", "--force").exit_code == 0
    follower.wait(timeout=30)
    events = [json.loads(line)["event"] for line in wait_for(printed.done, 30, "its output")]
    assert events[0] == "Started" and events[-1] == "Finished" and "Resumed" in events


class Lines(list[str]):
    """The lines a process prints, read as they come; `done()` once its output ended."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = threading.Event()

    def done(self) -> list[str] | None:
        return list(self) if self.ended.is_set() else None


def lines_of(process: subprocess.Popen[str]) -> Lines:
    lines = Lines()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
        lines.ended.set()

    threading.Thread(target=read, daemon=True).start()
    return lines


def test_an_event_store_that_is_down_is_one_line_naming_it_without_password(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDELIVER_EVENTS", "postgresql://ann:s3cret@127.0.0.1:1/events")
    result = runner.invoke(app, ["history"], obj=Runtime(project=world.project))
    assert result.exit_code == 1
    assert "event store postgresql://ann:***@127.0.0.1:1/events: cannot be opened" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


def test_version_runs_as_a_real_process_outside_any_project() -> None:
    """The installed command answers --version from /, with nothing on stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "edeliver.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    assert (done.returncode, done.stdout.strip()) == (0, f"edeliver {version('edeliver')}")
    assert done.stderr == ""


def test_ctrl_c_on_a_real_log_follow_exits_130_in_one_line(tmp_path: Path) -> None:
    """SIGINT to a real `edeliver log --follow` of an unfinished deployment: exit 130, one line,
    the deployment still there to resume (Ctrl-C of a reader settles nothing)."""
    world = World(tmp_path)
    crash_deploy(world, after=4)
    follower = subprocess.Popen(
        [sys.executable, "-m", "edeliver.cli", "-C", str(tmp_path), "log", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()  # printed: it is in its follow loop now
        assert first, "log printed no event"
        follower.send_signal(signal.SIGINT)
        _, stderr = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 130
    assert stderr.startswith("edeliver: interrupted;") and stderr.count("\n") == 1
    assert world.run("history", "--json").stdout.count('"outcome": null') == 1


def test_the_command_prints_the_refusal_and_exits_2(tmp_path: Path) -> None:
    """`edeliver migrations production` exits 2 with one line on stderr, touching nothing."""
    done = subprocess.run(
        [sys.executable, "-m", "edeliver.cli", "-C", str(tmp_path), "migrations", "production"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "edeliver: `migrations` (edeliver 1.x) is not in edeliver 2.0: ask the running release "
        "with `edeliver rpc ENV 'EXPR'` (e.g. Ecto.Migrator.migrations/1)"
    ]
    assert list(tmp_path.iterdir()) == []


LEAVING = """
import atexit, sys, threading, time
from pathlib import Path
marks = Path(sys.argv[1])
atexit.register(lambda: marks.with_suffix(".atexit").write_text("ran"))
def late() -> None:
    time.sleep(0.3)
    marks.with_suffix(".thread").write_text("finished")
threading.Thread(target=late).start()
sys.argv = ["edeliver", *sys.argv[2:]]
from edeliver.cli.main import main
main()
"""


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["--help"], 0),  # a long output, through a pipe
        (["-C", "/nonexistent/project", "plan", "prod"], None),  # a refusal: its own code
        (["deploy"], 2),  # a usage error
    ],
)
def test_the_command_leaves_at_once_yet_waits_for_threads_runs_atexit_and_flushes(
    tmp_path: Path, argv: list[str], status: int | None
) -> None:
    """`main` skips the interpreter's teardown (cli/leaving.py), but a thread that is no daemon
    still finishes, atexit handlers still run, the whole output arrives and the exit code is
    the command's (the same as the in-process run's)."""
    marks = tmp_path / "marks"
    done = subprocess.run(
        [sys.executable, "-c", LEAVING, str(marks), *argv],
        capture_output=True, text=True, check=False, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    in_process = runner.invoke(app, argv)
    assert done.returncode == (in_process.exit_code if status is None else status)
    assert done.returncode != 0 or done.stdout == in_process.stdout
    assert done.returncode == 0 or done.stderr.strip().startswith(("edeliver:", "Usage:")), done
    assert marks.with_suffix(".thread").read_text() == "finished"
    assert marks.with_suffix(".atexit").read_text() == "ran"
