"""edeliver 1.x's command line: rewritten to 2.0's spelling with a hint, or refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edeliver.cli.main import from_1x

REWRITTEN = [
    ("deploy release to production --version=1.2.3", "deploy production --version=1.2.3"),
    ("deploy release production", "deploy production"),
    ("deploy upgrade to production --version=1.2.4", "upgrade production --version=1.2.4"),
    ("deploy release --version=1.2.3", "deploy staging --version=1.2.3"),
    ("deploy release --version 1.2.3", "deploy staging --version 1.2.3"),
    ("build release", "build"),
    ("show releases", "releases"),
    ("-C /srv/app deploy release to production", "-C /srv/app deploy production"),
    ("start", "start staging"),
    ("restart --node web1", "restart staging --node web1"),
    ("version production", "ping production"),
    ("migrate", "migrate staging"),
]


@pytest.mark.parametrize(("given", "spelled"), REWRITTEN)
def test_a_1x_command_line_is_spelled_the_2_0_way_with_a_hint(given: str, spelled: str) -> None:
    """Each 1.x spelling becomes 2.0's (`to` dropped, staging by default) and says so."""
    spelling = from_1x(given.split())
    assert spelling.argv == spelled.split()
    assert spelling.refusal is None
    assert spelling.hint is not None and spelling.hint.endswith(
        "edeliver " + spelled.removeprefix("-C /srv/app ")
    )


@pytest.mark.parametrize(
    "given",
    ["show migrations", "migrations on staging"],
)  # fmt: skip
def test_a_1x_operation_2_0_lacks_is_refused_in_one_line(given: str) -> None:
    """show migrations / migrations say they are not in 2.0, and what asks instead."""
    spelling = from_1x(given.split())
    assert spelling.refusal is not None and "not in edeliver 2.0: ask" in spelling.refusal
    assert "\n" not in spelling.refusal


@pytest.mark.parametrize(
    "given",
    ["deploy production --version 1.2.3", "build upgrade --from 0.1.0", "releases",
     "restart production", "ping production --node web1", "stop staging"],
)  # fmt: skip
def test_a_2_0_command_line_passes_unchanged_without_a_hint(given: str) -> None:
    """2.0's own spellings are left alone."""
    spelling = from_1x(given.split())
    assert (spelling.argv, spelling.hint, spelling.refusal) == (given.split(), None, None)


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
