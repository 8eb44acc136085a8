"""`status`, `plan` and `releases` on the real adapters record nothing: no events database is
opened, created or written, and nothing else appears in the project."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edeliver.cli.main import app

runner = CliRunner()


def _closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose one node refuses connections, with nothing built or recorded yet."""
    monkeypatch.delenv("EDELIVER_EVENTS", raising=False)
    (tmp_path / ".deliver").mkdir()
    (tmp_path / ".deliver/edeliver.toml").write_text(
        f'app = "hello"\n[nodes.web1]\nhost = "127.0.0.1"\nport = {_closed_port()}\n'
        'path = "/srv/hello"\n[environments.prod]\nnodes = ["web1"]\n'
    )
    return tmp_path


@pytest.mark.parametrize(
    ("line", "code"),
    [("plan prod", 0), ("releases", 0), ("status prod", 1), ("plan prod --json", 0)],
)
def test_a_read_only_command_leaves_the_project_as_it_was(
    project: Path, line: str, code: int
) -> None:
    """The command answers (status: the node unreachable, exit 1) and the project holds only
    its config afterwards: no events.db, no store directory."""
    result = runner.invoke(app, ["-C", str(project), *line.split()])
    assert result.exit_code == code, result.output
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*")) == [
        ".deliver", ".deliver/edeliver.toml",
    ]  # fmt: skip
