"""The `edeliver` command line: parse, call one service, render, map errors to exit codes."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from edeliver.adapters.clock import SystemClock
from edeliver.adapters.config_file import load_config
from edeliver.adapters.event_store import open_deployments
from edeliver.cli import render
from edeliver.cli.composition import real_services, who
from edeliver.core.config import Config
from edeliver.core.deployment import SUCCEEDED, Deployment
from edeliver.core.errors import EdeliverError
from edeliver.core.orchestrator import Listener
from edeliver.core.rollout import Services, deploy, resume
from edeliver.core.service import Deployments
from edeliver.core.strategy import batches
from rich.console import Console

P = ParamSpec("P")
R = TypeVar("R")

STEPS = {
    "release": [
        "upload + verify sha256",
        "unpack beside",
        "switch current + restart",
        "health check",
    ],
    "upgrade": [
        "upload + verify sha256",
        "unpack_release",
        "install_release",
        "health check + make_permanent",
    ],
}


@dataclass
class Runtime:
    """What commands run against; tests replace the factories with fakes."""

    project: Path = field(default_factory=Path.cwd)
    services: Callable[[Path, Config, Listener | None], Services] = real_services
    deployments: Callable[[Path], Deployments] = open_deployments
    load_config: Callable[[Path], Config] = load_config
    console: Console | None = None

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

    return wrapper


def _runtime(ctx: typer.Context) -> Runtime:
    assert isinstance(ctx.obj, Runtime)
    return ctx.obj


def _run(coroutine: Coroutine[Any, Any, R]) -> R:
    return asyncio.run(coroutine)


@app.command()
@exits_on_errors
def plan(ctx: typer.Context, environment: str, as_json: JsonOption = False) -> None:
    """Show the nodes, batches and steps a deployment to ENVIRONMENT would take; change nothing."""
    runtime = _runtime(ctx)
    config = runtime.load_config(runtime.project)
    env = config.environment(environment)
    steps = STEPS[env.mode]
    if as_json:
        cut = [list(b) for b in batches(env.nodes, env.policy.max_parallel)]
        typer.echo(
            json.dumps(
                {
                    "environment": env.name,
                    "mode": env.mode,
                    "strategy": env.policy.strategy,
                    "fallback": env.policy.fallback,
                    "max_failures": env.policy.max_failures,
                    "nodes": {
                        n: config.nodes[n].address + ":" + config.nodes[n].path for n in env.nodes
                    },
                    "batches": cut,
                    "steps": steps,
                }
            )
        )
        return
    for line in render.plan_lines(config, env, steps):
        typer.echo(line)


@app.command(name="deploy")
@exits_on_errors
def deploy_command(
    ctx: typer.Context,
    environment: str,
    version: Annotated[str | None, typer.Option(help="Default: the newest in the store.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Roll a release out to ENVIRONMENT with its strategy and fallback."""
    runtime = _runtime(ctx)
    config = runtime.load_config(runtime.project)
    _rollout(runtime, config, as_json, lambda s: deploy(s, config, environment, version))


@app.command(name="resume")
@exits_on_errors
def resume_command(
    ctx: typer.Context,
    deployment_id: Annotated[
        str | None, typer.Argument(help="Default: the one unfinished.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Continue an interrupted deployment from its recorded events."""
    runtime = _runtime(ctx)
    config = runtime.load_config(runtime.project)
    _rollout(runtime, config, as_json, lambda s: resume(s, config, deployment_id))


def _rollout(
    runtime: Runtime,
    config: Config,
    as_json: bool,
    use_case: Callable[[Services], Coroutine[Any, Any, Deployment]],
) -> None:
    console = runtime.out()
    progress = None if as_json else render.Progress(console)
    services = runtime.services(runtime.project, config, progress)
    try:
        deployment = _run(use_case(services))
    finally:
        if progress:
            progress.stop()
        services.deployments.close()
    if as_json:
        typer.echo(json.dumps(render.summary(deployment)))
    else:
        render.print_summary(console, deployment)
    if deployment.outcome != SUCCEEDED:
        raise typer.Exit(1)


@app.command()
@exits_on_errors
def abandon(
    ctx: typer.Context,
    deployment_id: str,
    reason: Annotated[str, typer.Option(help="Why; recorded in the history.")],
) -> None:
    """Give up an interrupted deployment: release its environment's lock, record why."""
    runtime = _runtime(ctx)
    deployments = runtime.deployments(runtime.project)
    try:
        deployment = deployments.load(deployment_id)
        at = SystemClock().now().isoformat(timespec="seconds")
        deployments.abandon(deployment, reason, who(), at)
    finally:
        deployments.close()
    runtime.out().print(f"abandoned {deployment.short_id}; {deployment.environment} is unlocked")


@app.command()
@exits_on_errors
def log(
    ctx: typer.Context,
    deployment_id: Annotated[str | None, typer.Argument(help="Default: the latest.")] = None,
    as_json: JsonOption = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Wait for new events.")] = False,
) -> None:
    """Print the events of a deployment, oldest first."""
    runtime = _runtime(ctx)
    deployments = runtime.deployments(runtime.project)
    try:
        deployment = deployments.load(deployment_id) if deployment_id else deployments.latest()
        seen = _print_events(deployments, deployment, 0, as_json)
        while follow and not deployment.finished:
            time.sleep(0.5)  # SQLite cannot push notifications; polling serves both stores
            deployment = deployments.load(str(deployment.id))
            seen = _print_events(deployments, deployment, seen, as_json)
    finally:
        deployments.close()


def _print_events(
    deployments: Deployments, deployment: Deployment, after: int, as_json: bool
) -> int:
    for domain_event in deployments.events_of(deployment.id, after):
        record = render.event_record(domain_event)
        typer.echo(json.dumps(record) if as_json else render.event_line(record))
        after = record["seq"]
        sys.stdout.flush()
    return after


@app.command()
@exits_on_errors
def history(
    ctx: typer.Context,
    environment: Annotated[str | None, typer.Argument(help="Default: every environment.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List deployments: who deployed what, when, and how it ended."""
    runtime = _runtime(ctx)
    deployments = runtime.deployments(runtime.project)
    try:
        rows = [r for r in deployments.history() if environment in (None, r.environment)]
    finally:
        deployments.close()
    if as_json:
        typer.echo(json.dumps([vars(r) for r in rows]))
    else:
        runtime.out().print(render.history_rows(rows))


def main() -> None:
    app()
