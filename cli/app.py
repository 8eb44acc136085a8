"""What every command shares: the typer app, the Runtime it runs against (built by the
composition root), the mapping of errors to exit codes.

The command modules import only this, typer, rich and the pure parts of the core at the top:
`edeliver --help` must not pay for asyncssh, eventsourcing, boto3 or psycopg. The composition
root (and through it the adapters and the core's event-sourced parts) is imported when a
command first asks for its Runtime.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from typer._click import Command as ClickCommand  # typer vendors its own click
from typer._click import Context as ClickContext
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperGroup

from edeliver.core.errors import EdeliverError

if TYPE_CHECKING:
    from edeliver.cli.composition import Runtime

P = ParamSpec("P")
R = TypeVar("R")


# `edeliver --help` groups commands by workflow, in the order people use them.
SET_UP, BUILD, DEPLOY, OPERATE = "Set up", "Build", "Deploy", "Operate"
AUDIT, TRY = "Audit", "Try it"
_WORKFLOW = (
    *("init", "nodes", "migrate-config", "tasks"),
    *("build", "releases"),
    *("plan", "deploy", "upgrade", "rollback", "resume"),
    *("start", "stop", "restart", "ping", "eval", "rpc", "logs", "console", "migrate", "lock"),
    *("status", "log", "history", "abandon"),
    "demo",
)
_PROJECT_OPTIONS = ("-C", "--project")
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C


def project_option_first(args: Sequence[str]) -> list[str]:
    """`-C DIR` (or `--project DIR`, `--project=DIR`, `-CDIR`) moved to the front, so that it
    may stand anywhere on the line, as `git -C` and `make -C` users expect; `--` ends options."""
    moved: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        if arg in _PROJECT_OPTIONS and index + 1 < len(args):
            moved += [arg, args[index + 1]]
            index += 2
            continue
        if arg.startswith("--project=") or (arg.startswith("-C") and len(arg) > 2):
            moved.append(arg)
        else:
            rest.append(arg)
        index += 1
    return moved + rest


def _named_not_typed(command: ClickCommand) -> None:
    """Typer labels each parameter with its Python type (`<bool>`, `<list[str]>`): noise to the
    reader. A value is labelled by its name (VERSION, TAG) instead, a flag by nothing."""
    for param in command.get_params(ClickContext(command)):
        named = param.metavar or (param.name or "value").upper()
        param.metavar = "" if getattr(param, "is_flag", False) else named
        # An argument's name is its label already; an option's value is named once.
        label = "" if param.param_type_name == "argument" else param.metavar
        setattr(param, "display_type_rich", lambda ctx, label=label: label)  # noqa: B010
    for sub in getattr(command, "commands", {}).values():
        _named_not_typed(sub)


class _Root(TyperGroup):
    """The root group: commands in workflow order, the global `-C DIR` wherever it was written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _named_not_typed(self)

    def list_commands(self, ctx: ClickContext) -> list[str]:
        known = [name for name in _WORKFLOW if name in self.commands]
        return known + sorted(set(self.commands) - set(known))

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        return super().parse_args(ctx, project_option_first(args))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Usage errors (a bad flag, a missing argument) in one line with the exit code 2, as
        every other error, instead of typer's framed panel."""
        given = (args, prog_name, complete_var)
        if not standalone_mode:
            return super().main(*given, False, windows_expand_args, **extra)
        try:
            code = super().main(*given, False, windows_expand_args, **extra)
        except NoArgsIsHelpError as error:  # the help is printed already
            sys.exit(error.exit_code)
        except ClickException as error:
            typer.echo(f"edeliver: {_one_line(error)}", err=True)
            sys.exit(error.exit_code)
        except typer.Abort:  # end of input at a prompt
            typer.echo("edeliver: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _one_line(error: ClickException) -> str:
    message = " ".join(error.format_message().split())
    context = getattr(error, "ctx", None)
    if context is None:
        return message
    return f"{message} (`{context.command_path} --help` shows how)"


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"edeliver {version('edeliver')}")
        raise typer.Exit()


app = typer.Typer(
    name="edeliver",
    cls=_Root,
    help="Build Erlang/Elixir releases and roll them out to many nodes over SSH.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force", help="Even if its deployer wrote an event lately: you know it is gone."
    ),
]


@app.callback()
def _root(
    ctx: typer.Context,
    project: Annotated[
        Path,
        typer.Option(
            "--project",
            "-C",
            metavar="DIR",
            envvar="EDELIVER_PROJECT",
            show_default=False,
            show_envvar=True,
            help="The app's directory, anywhere on the line (default: the current one).",
        ),
    ] = Path(),
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print Edeliver's version and exit.",
        ),
    ] = False,
) -> None:
    if ctx.obj is None:  # a test may have given a Runtime of fakes
        ctx.obj = _NotBuilt(project.resolve())


def exits_on_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Map every EdeliverError to its one-line message and exit code (DESIGN §9), in one place."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except EdeliverError as error:
            typer.echo(f"edeliver: {error}", err=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            # Outside a rollout (a rollout records its interruption and exits 4 with a resume
            # hint): nothing recorded to resume, so exit as shells expect of Ctrl-C.
            typer.echo(
                "edeliver: interrupted; `edeliver history` shows whether a deployment is "
                "unfinished",
                err=True,
            )
            raise typer.Exit(INTERRUPTED_EXIT_CODE) from None

    return wrapper


@dataclass(frozen=True)
class _NotBuilt:
    """The Runtime to build for PROJECT when the command first asks for it: `--help` and
    `--version` never do, so they load no composition root."""

    project: Path


def runtime_of(ctx: typer.Context) -> Runtime:
    from edeliver.cli.composition import Runtime

    if isinstance(ctx.obj, _NotBuilt):
        ctx.obj = Runtime(project=ctx.obj.project)
    assert isinstance(ctx.obj, Runtime)
    return ctx.obj


def run(coroutine: Coroutine[Any, Any, R]) -> R:
    """Run a command's coroutine; SIGTERM (a CI job cancelled, `systemctl stop`, `kill`) stops
    it the way Ctrl-C does, so that a deployment records its interruption and can be resumed at
    once instead of looking like a deployer that may still be running."""
    import asyncio

    return asyncio.run(_stopped_by_sigterm(coroutine))


async def _stopped_by_sigterm(coroutine: Coroutine[Any, Any, R]) -> R:
    import asyncio

    loop, main = asyncio.get_running_loop(), asyncio.current_task()
    assert main is not None
    if threading.current_thread() is not threading.main_thread():
        return await coroutine  # signal handlers belong to the main thread
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        main.cancel()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        return await coroutine
    except asyncio.CancelledError:
        if terminated:  # a command with nothing to record: stopped like Ctrl-C stops it
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
