"""What every command shares: the typer app, the Runtime it runs against, error mapping.

The command modules import only this, typer, rich and the pure parts of the core at the top:
`edeliver --help` must not pay for asyncssh, eventsourcing, boto3 or psycopg. What a command
uses of the adapters (and of the core's event-sourced parts) it imports when it runs.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from typer._click import Command as ClickCommand  # typer vendors its own click
from typer._click import Context as ClickContext
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperGroup

from edeliver.cli.failures import INTERRUPTED_EXIT_CODE, exits_on_errors, say_error
from edeliver.cli.output import QUIET, Output
from edeliver.core.config import Config
from edeliver.core.errors import UsageError
from edeliver.core.redaction import Redactor

if TYPE_CHECKING:
    from edeliver.cli.composition import OpenNodeControl
    from edeliver.core.orchestrator import Listener
    from edeliver.core.ports import NodeShells, ReleaseStore
    from edeliver.core.rollout import Services
    from edeliver.core.service import Deployments

__all__ = ["INTERRUPTED_EXIT_CODE", "Runtime", "app", "exits_on_errors", "run", "runtime_of"]
_PIPE_WIDTH = 250
R = TypeVar("R")


# The Runtime's real factories, each importing its adapter when a command first calls it.
def real_services(project: Path, config: Config, listener: Listener | None = None) -> Services:
    from edeliver.cli.composition import real_services

    return real_services(project, config, listener)


def open_deployments(project: Path) -> Deployments:
    from edeliver.adapters.event_store import open_deployments

    return open_deployments(project)


def load_config(project: Path) -> Config:
    from edeliver.adapters.config_file import load_config

    return load_config(project)


def nothing_recorded(project: Path) -> bool:
    from edeliver.adapters.event_store import nothing_recorded

    return nothing_recorded(project)


def node_controls(project: Path, config: Config) -> OpenNodeControl:
    from edeliver.cli.composition import node_controls

    return node_controls(project, config)


def read_only_services(project: Path, config: Config) -> Services:
    from edeliver.cli.composition import read_only_services

    return read_only_services(project, config)


def release_store(project: Path, config: Config) -> ReleaseStore:
    from edeliver.cli.composition import release_store

    return release_store(project, config)


def deployer_secrets(config: Config | None = None) -> Redactor:
    from edeliver.cli.composition import deployer_secrets

    return deployer_secrets(config)


def mask_configured_secrets(runtime: Runtime) -> None:
    """-v / -vv print steps and scripts: once the command reads its config, the values of the
    variables it names as secrets (`from_env`, the cookie's, `redact`) are masked in them too,
    not only those whose names look secret. (The root option is parsed before any config.)"""
    load = runtime.load_config

    def loading(project: Path) -> Config:
        config = load(project)
        runtime.output.redact = deployer_secrets(config)
        return config

    runtime.load_config = loading


@dataclass
class Runtime:
    """What commands run against; tests replace the factories with fakes."""

    project: Path = field(default_factory=Path.cwd)
    services: Callable[[Path, Config, Listener | None], Services] = real_services
    deployments: Callable[[Path], Deployments] = open_deployments
    load_config: Callable[[Path], Config] = load_config
    console: Console | None = None
    nothing_recorded: Callable[[Path], bool] = nothing_recorded
    output: Output = field(default_factory=Output)  # -v / -q, set once by the root callback
    # None: the real read-only services, or with fake `services` (tests), those.
    readers: Callable[[Path, Config], Services] | None = None
    controls: Callable[[Path, Config], OpenNodeControl] = node_controls

    def recorded_deployments(self) -> Deployments | None:
        """The deployments for a command that only reads them; None when nothing was ever
        recorded, so that reading creates no store (nor a project directory given by mistake)."""
        if not self.project.is_dir():
            raise UsageError(f"{self.project}: no such project directory (-C, EDELIVER_PROJECT)")
        if self.nothing_recorded(self.project):
            return None
        return self.deployments(self.project)

    def reading_services(self, config: Config) -> Services:
        """Services for a command that records nothing: no event store opened or created."""
        if self.readers is not None:
            return self.readers(self.project, config)
        if self.services is real_services:
            return read_only_services(self.project, config)
        services = self.services(self.project, config, None)  # a test's fakes
        services.deployments.close()
        return services

    def release_store(self, config: Config) -> ReleaseStore:
        """The store alone, for a command that only looks into it (plan): with the real
        services, no node connection nor event store is set up (nor imported) for it."""
        if self.services is real_services and self.readers is None:
            return release_store(self.project, config)
        return self.reading_services(config).store

    def node_shells(self, config: Config, mode: str = "release") -> NodeShells:
        """Just the connections to nodes, for commands that record nothing."""
        return self.reading_services(config).shells_for(mode)

    def out(self) -> Console:
        # Created per command, never at import time, so test runners capture it.
        if self.console is None:
            self.console = Console(highlight=False, width=output_width())
        return self.console


def output_width() -> int | None:
    """The terminal's width on a terminal (None: rich asks it), else COLUMNS if set, else wide:
    pipes and CI logs get whole lines, not tables cut to rich's default of 80 columns."""
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() else _PIPE_WIDTH


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
    """Typer labels each parameter with its Python type (`<bool>`, `<list[str]>`): noise to the
    reader. A value is labelled by its name (VERSION, TAG) instead, a flag by nothing."""
    for param in command.get_params(ClickContext(command)):
        named = param.metavar or (param.name or "value").upper()
        flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
        param.metavar = "" if flag else named
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
    if not isinstance(ctx.obj, Runtime):
        ctx.obj = Runtime(project=project.resolve())
    # Only -v and -vv print what may hold a secret; the rest need not load the composition.
    output = Output(
        QUIET if quiet else verbose, redact=deployer_secrets() if verbose else Redactor()
    )
    ctx.obj.output = output
    if verbose:
        mask_configured_secrets(ctx.obj)
    ctx.with_resource(output.showing_scripts())


def runtime_of(ctx: typer.Context) -> Runtime:
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
