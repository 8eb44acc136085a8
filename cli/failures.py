"""How errors leave a command, in one place: one line on stderr (a line per problem of a config
file), the same error as a JSON document on stdout when `--json` was given, the exit code of
DESIGN §9 (130 for Ctrl-C outside a rollout)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import typer

from edeliver.cli.output import print_json_error
from edeliver.core.domain.errors import ConfigError, ConfigErrors, EdeliverError, error_code

P = ParamSpec("P")
R = TypeVar("R")
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C


def exits_on_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Map every EdeliverError to its one-line message and exit code (DESIGN §9), in one place;
    a command given `--json` also prints the error as a JSON document on stdout."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        as_json = kwargs.get("as_json") is True
        try:
            return command(*args, **kwargs)
        except EdeliverError as error:
            say_error(str(error), error_code(error), error.exit_code, as_json, _details(error))
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            # Outside a rollout (a rollout records its interruption and exits 4 with a resume
            # hint): nothing recorded to resume, so exit as shells expect of Ctrl-C.
            message = "interrupted; `edeliver history` shows whether a deployment is unfinished"
            say_error(message, "interrupted", INTERRUPTED_EXIT_CODE, as_json)
            raise typer.Exit(INTERRUPTED_EXIT_CODE) from None

    return wrapper


def say_error(
    message: str, code: str, exit_code: int, as_json: bool, details: dict[str, Any] | None = None
) -> None:
    """The one line on stderr (a line per problem of a config file); with --json, the same
    error as a document on stdout too."""
    details = details or {}
    lines = [str(ConfigError(**p)) for p in details.get("problems", ())]
    for line in lines or [message]:
        typer.echo(f"edeliver: {line}", err=True)
    if as_json:
        print_json_error(code, message, exit_code, **details)


def _details(error: EdeliverError) -> dict[str, Any]:
    """What a program may want besides the message: a config error's file and key, and with
    several, each problem's."""
    if isinstance(error, ConfigErrors):
        problems = [_details(problem) for problem in error.problems]
        return {**problems[0], "problems": problems}
    if isinstance(error, ConfigError):
        return {"file": error.file, "key": error.key, "problem": error.problem}
    return {}
