"""What every command shares: the typer app, the Runtime it runs against, error mapping."""

from __future__ import annotations

import asyncio
import functools
import signal
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from edeliver.adapters.config_file import load_config
from edeliver.adapters.event_store import open_deployments
from edeliver.cli.composition import real_services
from edeliver.core.config import Config
from edeliver.core.errors import DeploymentInterrupted, EdeliverError
from edeliver.core.orchestrator import Listener
from edeliver.core.ports import NodeShells
from edeliver.core.rollout import Services
from edeliver.core.service import Deployments

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Runtime:
    """What commands run against; tests replace the factories with fakes."""

    project: Path = field(default_factory=Path.cwd)
    services: Callable[[Path, Config, Listener | None], Services] = real_services
    deployments: Callable[[Path], Deployments] = open_deployments
    load_config: Callable[[Path], Config] = load_config
    console: Console | None = None

    def node_shells(self, config: Config, mode: str = "release") -> NodeShells:
        """Just the connections to nodes, for commands that record nothing."""
        services = self.services(self.project, config, None)
        services.deployments.close()
        return services.shells_for(mode)

    def out(self) -> Console:
        # Created per command, never at import time, so test runners capture it.
        if self.console is None:
            self.console = Console(highlight=False)
        return self.console


app = typer.Typer(
    name="edeliver",
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
    project: Annotated[Path, typer.Option("--project", "-C", help="The app's directory.")] = Path(),
) -> None:
    if not isinstance(ctx.obj, Runtime):
        ctx.obj = Runtime(project=project.resolve())


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
            # Before a deployment records anything (or in build): nothing to resume but the lock.
            typer.echo(
                "edeliver: interrupted; `edeliver resume` continues an unfinished "
                "deployment, `edeliver history` shows whether there is one",
                err=True,
            )
            raise typer.Exit(DeploymentInterrupted.exit_code) from None

    return wrapper


def runtime_of(ctx: typer.Context) -> Runtime:
    assert isinstance(ctx.obj, Runtime)
    return ctx.obj


def run(coroutine: Coroutine[Any, Any, R]) -> R:
    """Run a command's coroutine; SIGTERM (a CI job cancelled, `systemctl stop`, `kill`) stops
    it the way Ctrl-C does, so that a deployment records its interruption and can be resumed at
    once instead of looking like a deployer that may still be running."""
    return asyncio.run(_stopped_by_sigterm(coroutine))


async def _stopped_by_sigterm(coroutine: Coroutine[Any, Any, R]) -> R:
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
