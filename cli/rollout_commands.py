"""Commands that change nodes: build, deploy, resume, rollback; and plan, which shows how."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edeliver.cli import render
from edeliver.cli.app import (
    BUILD,
    DEPLOY,
    ForceOption,
    JsonOption,
    VersionOption,
    app,
    exits_on_errors,
    run,
    runtime_of,
)
from edeliver.cli.operation_commands import LabelOption, NodeOption, chosen_nodes
from edeliver.cli.output import print_json
from edeliver.cli.task_commands import ExcludeOption, IncludeOption, OnlyOption, selection_of
from edeliver.core.domain.config import Config
from edeliver.core.domain.errors import DeploymentFailed
from edeliver.core.domain.model import Artifact
from edeliver.core.usecases.builds import build_release

if TYPE_CHECKING:
    from edeliver.cli.composition import Runtime
    from edeliver.core.domain.deployment import Deployment
    from edeliver.core.usecases.loaded_task import LoadedTask
    from edeliver.core.usecases.services import Services


@app.command(name="deploy", rich_help_panel=DEPLOY)
@exits_on_errors
def deploy_command(
    ctx: typer.Context,
    environment: str,
    version: VersionOption = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    only: OnlyOption = None,
    node: NodeOption = None,
    label: LabelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Roll a release out to ENVIRONMENT with its strategy and fallback, running its tasks;
    with --node / --label to those nodes only (recorded as such; `status` then shows the mix).

    Example: edeliver deploy production --version 1.2.3 --include seed
    """
    runtime = runtime_of(ctx)
    config = runtime.config
    nodes = _chosen(config, environment, node, label)
    tags = (include, exclude, only)
    deploy_with_tasks(runtime, config, environment, version, tags, as_json, nodes)


def _chosen(
    config: Config, environment: str, node: list[str] | None, label: list[str] | None
) -> list[str] | None:
    """The names --node / --label choose; None without them: the whole environment."""
    if not node and not label:
        return None
    return [n.name for n in chosen_nodes(config, environment, node, label)]


def deploy_with_tasks(
    runtime: Runtime,
    config: Config,
    environment: str,
    version: str | None,
    tags: tuple[list[str] | None, list[str] | None, list[str] | None],
    as_json: bool,
    nodes: list[str] | None = None,
) -> None:
    """Deploy with the project's tasks, `tags` (--include, --exclude, --only) choosing them;
    the tasks are loaded once, before anything connects to a node. `nodes`: only those."""
    from edeliver.core.usecases.rollout import deploy

    tasks = runtime.tasks
    chosen = selection_of(*tags, [t.spec for t in tasks], runtime.output)
    _rollout(
        runtime, as_json, lambda s: deploy(s, config, environment, version, chosen, nodes), tasks
    )


@app.command(name="resume", rich_help_panel=DEPLOY)
@exits_on_errors
def resume_command(
    ctx: typer.Context,
    deployment_id: Annotated[
        str | None, typer.Argument(help="Default: the one unfinished.")
    ] = None,
    as_json: JsonOption = False,
    force: ForceOption = False,
) -> None:
    """Continue an interrupted deployment from its recorded events.

    Example: edeliver resume 3f2a9c1e
    """
    from edeliver.core.usecases.rollout import resume

    runtime = runtime_of(ctx)
    config = runtime.config
    _rollout(runtime, as_json, lambda s: resume(s, config, deployment_id, force))


def _rollout(
    runtime: Runtime,
    as_json: bool,
    use_case: Callable[[Services], Coroutine[Any, Any, Deployment]],
    tasks: list[LoadedTask] | None = None,
) -> None:
    """Run a deploy-like use case and report it; DeploymentFailed (exit 1) unless it succeeded."""
    from edeliver.core.domain.deployment_reading import SUCCEEDED

    deployment = rollout_and_report(runtime, as_json, use_case, tasks)
    if deployment.outcome != SUCCEEDED:
        if as_json:  # the summary document says so: stdout keeps one document
            raise typer.Exit(DeploymentFailed.exit_code)
        short = deployment.short_id
        raise DeploymentFailed(
            f"deployment {short} {deployment.outcome}, its fallback applied; "
            f"`edeliver log {short}` shows every step"
        )


def rollout_and_report(
    runtime: Runtime,
    as_json: bool,
    use_case: Callable[[Services], Coroutine[Any, Any, Deployment]],
    tasks: list[LoadedTask] | None = None,
) -> Deployment:
    console, output = runtime.out(), runtime.output
    progress = render.Progress(console, output, as_json)
    services = runtime.services(progress, runtime.tasks if tasks is None else tasks)
    try:
        deployment = run(use_case(services))
    finally:
        progress.stop()
        services.deployments.close()
    routes = routes_of(deployment)
    if as_json:
        print_json(**render.summary(deployment), **({"routes": routes} if routes else {}))
    elif output.quiet:
        console.print(render.final_line(deployment), markup=False, highlight=False)
    else:
        render.print_summary(console, deployment)
        for node, route in routes.items():  # hot upgrade, or a full release and why
            console.print(f"{node}: {route}", markup=False, highlight=False)
    return deployment


def routes_of(deployment: Deployment) -> dict[str, str]:
    """Upgrade mode: the route each node took and why, as its events recorded it."""
    routes = {node: deployment.route_of(node) for node in deployment.order}
    return {node: route.why for node, route in routes.items() if route is not None}


build_app = typer.Typer()
app.add_typer(build_app, name="build", rich_help_panel=BUILD)


@build_app.callback(invoke_without_command=True)
@exits_on_errors
def build(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Build a release (MIX_ENV=prod) with the configured strategy and put it in the store.

    Example: edeliver build --json
    """
    if ctx.invoked_subcommand:  # `build upgrade`: its own command
        return
    runtime = runtime_of(ctx)
    stored = build_into_store(runtime)
    if as_json:
        print_json(
            app=stored.app,
            version=stored.version,
            sha256=stored.sha256,
            size=stored.size,
            location=stored.location,
            platform=str(stored.platform),
        )
    else:
        typer.echo(
            f"built {stored.app} {stored.version} for {stored.platform}: "
            f"{stored.size} bytes, sha256 {stored.sha256[:16]}…, in {stored.location}"
        )


def build_into_store(runtime: Runtime, env: dict[str, str] | None = None) -> Artifact:
    """Build a release with the configured strategy (`env`: extra build variables) and put it
    in the configured store."""
    store = runtime.store()
    return run(build_release(runtime.builder(env, store), store, runtime.clock, runtime.user))


@app.command(rich_help_panel=DEPLOY)
@exits_on_errors
def rollback(
    ctx: typer.Context,
    environment: str,
    to: Annotated[
        str | None, typer.Option("--to", help="Default: the release before the current one.")
    ] = None,
    node: NodeOption = None,
    label: LabelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Roll ENVIRONMENT (or the nodes --node / --label choose) back to an earlier release, as
    a deployment of it.

    Example: edeliver rollback production --to 1.2.2
    """
    from edeliver.core.usecases.rollout import deploy

    runtime = runtime_of(ctx)
    config = runtime.config
    config.environment(environment)  # unknown: refused before the history is read
    nodes = _chosen(config, environment, node, label)
    target = to or _previous_release(runtime, environment)
    _rollout(runtime, as_json, lambda s: deploy(s, config, environment, target, None, nodes))


def _previous_release(runtime: Runtime, environment: str) -> str:
    """The newest release deployed to the environment before its current one."""
    from edeliver.core.usecases.planning import previous_release

    deployments = runtime.deployments()
    try:
        return previous_release(deployments.history(), environment)
    finally:
        deployments.close()
