"""What every command shares: the typer app, the Runtime it runs against (built by the
composition root), the mapping of errors to exit codes.

The command modules import only this, typer, rich and the pure parts of the core at the top:
`edeliver --help` must not pay for asyncssh, eventsourcing, boto3 or psycopg. The composition
root (and through it the adapters and the core's event-sourced parts) is imported when a
command first asks for its Runtime.
"""

from __future__ import annotations

import copy
import signal
import sys
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer._click import Command as ClickCommand  # typer vendors its own click
from typer._click import Context as ClickContext
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer._click.types import ParamType
from typer.core import TyperGroup

from edeliver.cli.failures import INTERRUPTED_EXIT_CODE, exits_on_errors, say_error
from edeliver.cli.output import QUIET, Output
from edeliver.core.domain.redaction import Redactor

if TYPE_CHECKING:
    from edeliver.cli.composition import Runtime

__all__ = ["INTERRUPTED_EXIT_CODE", "app", "exits_on_errors", "run", "runtime_of"]
R = TypeVar("R")


# `edeliver --help` groups commands by workflow, in the order people use them.
SET_UP, BUILD, DEPLOY, OPERATE = "Set up", "Build", "Deploy", "Operate"
AUDIT, TRY = "Audit", "Try it"
_WORKFLOW = (
    *("init", "config", "nodes", "migrate-config", "tasks"),
    *("build", "releases"),
    *("plan", "deploy", "upgrade", "rollback", "resume"),
    *("start", "stop", "restart", "ping", "eval", "rpc", "logs", "console", "migrate", "lock"),
    *("status", "log", "history", "abandon"),
    "demo",
)
_PROJECT_OPTIONS = ("-C", "--project")
_VERBOSITY_FLAGS = ("--verbose", "--quiet", "-q")  # and -v, -vv, -vvv


def project_option_first(args: Sequence[str]) -> list[str]:
    """`-C DIR` (or `--project DIR`, `--project=DIR`, `-CDIR`) and `-v` / `-q` moved to the
    front, so that they may stand anywhere on the line, as `git -C` and `make -C` users expect;
    `--` ends options."""
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
        if _global_alone(arg):
            moved.append(arg)
        else:
            rest.append(arg)
        index += 1
    return moved + rest


def _global_alone(arg: str) -> bool:
    """A global option that carries its value (`--project=DIR`, `-CDIR`) or needs none."""
    if arg.startswith("--project=") or (arg.startswith("-C") and len(arg) > 2):
        return True
    return arg in _VERBOSITY_FLAGS or (arg[:2] == "-v" and set(arg[1:]) == {"v"})


def _named_not_typed(command: ClickCommand) -> None:
    """Typer labels each parameter with its type (`<text>`, `<path>`): noise to the reader. A
    value is labelled by its name (VERSION, TAG) instead, a flag by nothing, and an argument,
    whose name is its label already, by nothing beside it."""
    for param in command.get_params(ClickContext(command)):
        named = param.metavar or (param.name or "value").upper()
        flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
        param.metavar = "" if flag else named  # an option's type column shows its metavar
        if param.param_type_name == "argument":
            param.type = _unlabelled(param.type)
    for sub in getattr(command, "commands", {}).values():
        _named_not_typed(sub)


def _unlabelled(kind: ParamType) -> ParamType:
    """A copy of `kind` that gives the help an empty type label (typer shows `<name>` for
    None); parsing and errors are the type's own."""
    quiet = copy.copy(kind)
    setattr(quiet, "get_metavar", lambda param, ctx: "")  # noqa: B010
    return quiet


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
        _named_not_typed(self)  # again: typer adds the completion options after __init__
        given = (args, prog_name, complete_var)
        if not standalone_mode:
            return super().main(*given, False, windows_expand_args, **extra)
        try:
            code = super().main(*given, False, windows_expand_args, **extra)
        except NoArgsIsHelpError as error:  # the help is printed already
            sys.exit(error.exit_code)
        except ClickException as error:
            asked_json = "--json" in (sys.argv[1:] if args is None else args)
            say_error(_one_line(error), "usage", error.exit_code, asked_json)
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
    add_completion=True,  # --install-completion, --show-completion
    pretty_exceptions_enable=False,
)
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
VersionOption = Annotated[
    str | None, typer.Option(metavar="VERSION", help="Default: the newest in the store.")
]
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
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="Anywhere on the line. -v: each node's steps with timings as they happen; "
            "-vv: also the scripts sent to the nodes, secrets masked.",
        ),
    ] = 0,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Only errors and the final line."),
    ] = False,
) -> None:
    if verbose and quiet:
        raise typer.BadParameter("give -v or -q, not both", param_hint="-q")
    # Only -v and -vv print what may hold a secret; the rest need not load the composition.
    output = Output(QUIET if quiet else verbose, redact=_secrets() if verbose else Redactor())
    if ctx.obj is None or isinstance(ctx.obj, _NotBuilt):
        ctx.obj = _NotBuilt(project.resolve(), output)
    else:  # a test's Runtime of fakes: frozen, so a copy that shows what -v / -q ask
        ctx.obj = replace(ctx.obj, output=output)
    ctx.with_resource(output.showing_scripts())


def _secrets() -> Redactor:
    from edeliver.cli.composition import deployer_secrets

    return deployer_secrets()


@dataclass(frozen=True)
class _NotBuilt:
    """The Runtime to build for PROJECT (showing as OUTPUT says) when the command first asks
    for it: `--help` and `--version` never do, so they load no composition root."""

    project: Path
    output: Output


def runtime_of(ctx: typer.Context) -> Runtime:
    from edeliver.cli.composition import Runtime

    if isinstance(ctx.obj, _NotBuilt):
        ctx.obj = Runtime(project=ctx.obj.project, output=ctx.obj.output)
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
