"""Each command imports only what it uses (issue 15): `--help` and `--version` load no I/O
library, `plan` no store, build or event-store adapter, `history` on SQLite no SSH, S3 or
PostgreSQL library. Each run is a fresh interpreter, asked afterwards what it imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.one_node_project import one_node_project

IO_LIBRARIES = ("asyncio", "asyncssh", "eventsourcing", "boto3", "botocore", "psycopg")


def imported_by(tmp_path: Path, *argv: str) -> set[str]:
    """The top-level packages and edeliver modules a run of `edeliver ARGV` imported, written
    by an atexit handler (the command leaves by `os._exit`, after running those)."""
    report = tmp_path / "modules.json"
    code = (
        "import atexit, json, sys\n"
        f"out = open({str(report)!r}, 'w')\n"
        "atexit.register(lambda: out.write(json.dumps(sorted(sys.modules))) and out.close())\n"
        "from edeliver.cli.main import main\n"
        f"sys.argv = ['edeliver', *{list(argv)!r}]\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDELIVER_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = json.loads(report.read_text())
    return {n for n in names if n.startswith("edeliver.")} | {n.split(".")[0] for n in names}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with a one-node environment and a local store."""
    return one_node_project(tmp_path)


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_no_io_library_and_no_adapter(project: Path, flag: str) -> None:
    """`edeliver --help` / `--version` load typer and the pure core only."""
    modules = imported_by(project, flag)
    assert "edeliver.cli.rollout_commands" in modules  # every command was registered
    assert not modules & {*IO_LIBRARIES, "cryptography", "transitions"}
    adapters = {m for m in modules if m.startswith("edeliver.adapters.")}
    assert adapters <= {"edeliver.adapters.local.clock"}
    assert "edeliver.cli.composition" not in modules


def test_plan_loads_no_store_build_or_event_store_adapter(project: Path) -> None:
    """`edeliver plan` reads the config and the SSH config, nothing of stores, builds or events."""
    modules = imported_by(project, "plan", "prod")
    assert (
        "edeliver.adapters.local.ssh_config" in modules
    )  # the nodes' addresses as ssh resolves them
    assert not modules & {"eventsourcing", "boto3", "botocore", "psycopg"}
    for heavy in ("ssh", "node_scripts", "build_scripts", "s3_store", "event_store", "ssh_store"):
        assert f"edeliver.adapters.{heavy}" not in modules


def test_history_on_sqlite_loads_no_ssh_s3_or_postgresql_library(project: Path) -> None:
    """`edeliver history` with a SQLite event store loads eventsourcing and nothing of SSH,
    S3 or PostgreSQL."""
    (project / ".deliver" / "events.db").touch()
    modules = imported_by(project, "history")
    assert "eventsourcing" in modules
    assert not modules & {"asyncssh", "boto3", "botocore", "psycopg"}
