"""The `edeliver` command line: parse, call one service, render, map errors to exit codes.

edeliver 1.x's spellings (`deploy release to production --version=1.2.3`, `build release`,
`show releases`…) are rewritten to 2.0's before typer parses them, with a one-line hint; 1.x
operations 2.0 does not have yet say so in one line (exit 2).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING

import typer

from edeliver.cli.app import app
from edeliver.cli.failures import say_error
from edeliver.core.domain.errors import UsageError

if TYPE_CHECKING:
    from edeliver.cli.composition import Runtime

__all__ = ["Runtime", "Spelling", "app", "from_1x", "main"]


def __getattr__(name: str) -> object:
    """`Runtime`, where tests and embedders find it, imported on first use: `--help` loads no
    composition root."""
    if name == "Runtime":
        from edeliver.cli.composition import Runtime

        return Runtime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Each module registers its commands on `app` as it is imported: the one list of them.
_COMMAND_MODULES = (
    "audit_commands", "config_commands", "demo", "init_command", "node_commands",
    "operation_commands", "plan_command", "release_commands", "rollout_commands",
    "store_commands", "task_commands", "upgrade_commands",
)  # fmt: skip
for _module in _COMMAND_MODULES:
    import_module(f"edeliver.cli.{_module}")

# 1.x words (command + kind) → 2.0's command, and whether an environment follows (1.x: staging
# when none is given, `to` ignored). None: 2.0 has no such operation yet.
_SPELLINGS: dict[tuple[str, ...], tuple[str, bool] | None] = {
    ("deploy", "release"): ("deploy", True),
    ("deploy", "upgrade"): ("upgrade", True),
    ("build", "release"): ("build", False),
    ("show", "releases"): ("releases", False),
    ("show", "migrations"): None,
    ("migrations",): None,
    ("migrate",): ("migrate", True),
    ("start",): ("start", True),
    ("stop",): ("stop", True),
    ("restart",): ("restart", True),
    ("ping",): ("ping", True),
    ("version",): ("ping", True),  # 2.0's ping answers with each node's running version
}
_GLOBAL_WITH_VALUE = ("-C", "--project")
# of deploy and upgrade, and of the operations
_VALUE_OPTIONS = ("--version", "--include", "--exclude", "--only", "--node", "--label", "--lines")
_DEFAULT_1X_ENVIRONMENT = "staging"


@dataclass(frozen=True)
class Spelling:
    """argv as 2.0 spells it, the hint to show, or why 2.0 cannot do it (exit 2)."""

    argv: list[str]
    hint: str | None = None
    refusal: str | None = None


def from_1x(argv: Sequence[str]) -> Spelling:
    """2.0's spelling of a 1.x command line; any other command line as it is."""
    start = _command_index(argv)
    head, words = list(argv[:start]), list(argv[start:])
    for key, spelling in _SPELLINGS.items():
        if tuple(words[: len(key)]) != key:
            continue
        given = " ".join(key)
        if spelling is None:
            return Spelling(
                list(argv),
                refusal=f"`{given}` (edeliver 1.x) is not in edeliver 2.0: ask the running "
                "release with `edeliver rpc ENV 'EXPR'` (e.g. Ecto.Migrator.migrations/1)",
            )
        command, takes_environment = spelling
        rest = words[len(key) :]
        if takes_environment:
            rest = _with_environment([w for w in rest if w != "to"])
        new = [command, *rest]
        if new == words:  # spelt the same in 2.0
            return Spelling(list(argv))
        return Spelling(
            [*head, *new], hint=f"edeliver 1.x spelling; in 2.0: edeliver {' '.join(new)}"
        )
    return Spelling(list(argv))


def _command_index(argv: Sequence[str]) -> int:
    """Where the command starts, after global options such as `-C DIR`."""
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        index += 2 if argv[index] in _GLOBAL_WITH_VALUE else 1
    return index


def _with_environment(rest: list[str]) -> list[str]:
    """1.x took the environment as its first plain word, staging when there was none (a
    request for help needs none)."""
    if "--help" in rest or "-h" in rest:
        return rest
    index = 0
    while index < len(rest):
        if not rest[index].startswith("-"):
            return rest
        index += 2 if rest[index] in _VALUE_OPTIONS else 1
    return [_DEFAULT_1X_ENVIRONMENT, *rest]


def main() -> None:
    """The `edeliver` script: run the command, then leave without the interpreter's teardown
    (`leaving.exit_now`)."""
    from edeliver.cli.leaving import exit_now

    try:
        _command(sys.argv[1:])
    except SystemExit as leaving:
        exit_now(leaving)
    exit_now(SystemExit(0))


def _command(argv: list[str]) -> None:
    spelling = from_1x(argv)
    if spelling.refusal:
        say_error(spelling.refusal, "usage", UsageError.exit_code, "--json" in spelling.argv)
        sys.exit(UsageError.exit_code)
    if spelling.hint:
        typer.echo(f"edeliver: {spelling.hint}", err=True)
    app(args=spelling.argv)
