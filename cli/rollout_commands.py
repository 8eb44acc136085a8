"""Commands that change nodes: build, deploy, resume, rollback; and plan, which shows how."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from edeliver.adapters.clock import SystemClock
from edeliver.cli import render
from edeliver.cli.app import (
    BUILD,
    DEPLOY,
    ForceOption,
    JsonOption,
    Runtime,
    VersionOption,
    app,
    exits_on_errors,
    run,
    runtime_of,
)
from edeliver.cli.operation_commands import LabelOption, NodeOption, chosen_nodes
from edeliver.cli.output import Output, print_json
from edeliver.cli.task_commands import ExcludeOption, IncludeOption, OnlyOption, selection_of
from edeliver.core.config import Config
from edeliver.core.errors import UsageError
from edeliver.core.model import Artifact
from edeliver.core.ports import CommandHost

if TYPE_CHECKING:
    from edeliver.adapters.remote_build import DirectStore
    from edeliver.core.deployment import Deployment
    from edeliver.core.loaded_task import LoadedTask
    from edeliver.core.rollout import Services


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
    config = runtime.load_config(runtime.project)
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
    from edeliver.cli.composition import project_tasks
    from edeliver.core.rollout import deploy

    tasks = project_tasks(runtime.project)
    chosen = selection_of(*tags, [t.spec for t in tasks], runtime.output)
    _rollout(
        runtime, config, as_json,
        lambda s: deploy(s, config, environment, version, chosen, nodes), tasks,
    )  # fmt: skip


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
    from edeliver.core.rollout import resume

    runtime = runtime_of(ctx)
    config = runtime.load_config(runtime.project)
    _rollout(runtime, config, as_json, lambda s: resume(s, config, deployment_id, force))


def _rollout(
    runtime: Runtime,
    config: Config,
    as_json: bool,
    use_case: Callable[[Services], Coroutine[Any, Any, Deployment]],
    tasks: list[LoadedTask] | None = None,
) -> None:
    """Run a deploy-like use case, report it, exit 1 unless it succeeded."""
    from edeliver.core.deployment import SUCCEEDED

    deployment = rollout_and_report(runtime, config, as_json, use_case, tasks)
    if deployment.outcome != SUCCEEDED:
        raise typer.Exit(1)


def rollout_and_report(
    runtime: Runtime,
    config: Config,
    as_json: bool,
    use_case: Callable[[Services], Coroutine[Any, Any, Deployment]],
    tasks: list[LoadedTask] | None = None,
) -> Deployment:
    from edeliver.cli.composition import project_tasks, with_tasks

    console, output = runtime.out(), runtime.output
    tasks = project_tasks(runtime.project) if tasks is None else tasks
    progress = render.Progress(console, output, as_json)
    services = runtime.services(runtime.project, config, progress)
    services = with_tasks(services, runtime.project, config, tasks)
    services.warn = lambda line: output.note(f"edeliver: {line}")
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
    config = runtime.load_config(runtime.project)
    stored = build_into_store(runtime.project, config, output=runtime.output)
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


def build_into_store(
    project: Path, config: Config, env: dict[str, str] | None = None, output: Output | None = None
) -> Artifact:
    """Build with the configured strategy and store the release; its tasks' lines and
    warnings said through `output` (-q keeps them back)."""
    output = output or Output()
    if not config.app:
        raise UsageError(f"{config.file}: app: not set and no mix.exs project name found")
    from edeliver.adapters.local_commands import LocalCommandHost
    from edeliver.cli.composition import (
        build_host,
        builder,
        deployer_secrets,
        project_tasks,
        release_store,
        ssh_task_env,
        who,
    )
    from edeliver.core.task_runs import legacy_build_env, run_build_stage

    tasks, here, app = project_tasks(project), LocalCommandHost(project), config.app
    remote = build_host(config)

    async def at_stage(stage: str, host: CommandHost) -> None:
        # Legacy hooks run here and reach the build host as 1.x's did: HOSTS, BUILD_AT (the
        # per-build directory, where the sources are) and `__remote` pointing at it.
        directory = getattr(host, "path", None)
        legacy = legacy_build_env(remote, directory) if remote and directory else {}
        legacy |= ssh_task_env(project, config) if legacy else {}
        # MIX_ENV: an Elixir task `where: :build` runs by `mix run` in the built project.
        build_env = {"MIX_ENV": config.build.mix_env, **(env or {}), **legacy}
        hide = deployer_secrets(config)
        await run_build_stage(tasks, stage, app, host, here, build_env, output.note, hide)

    store = release_store(project, config)
    warn = functools.partial(_warn, output)
    built = builder(project, config, app, env, warn=warn, store=store, at_stage=at_stage).build()
    now = SystemClock().now().isoformat(timespec="seconds")
    artifact, extra = replace(built.artifact, built_at=now), {"built_by": who()}
    if built.tarball is None:  # a build host put it into the store itself
        return cast("DirectStore", store).record(artifact, extra)
    return store.put(built.tarball, artifact, extra)


def _warn(output: Output, text: str) -> None:
    output.note(f"edeliver: warning: {text}")


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
    from edeliver.core.rollout import deploy

    runtime = runtime_of(ctx)
    config = runtime.load_config(runtime.project)
    nodes = _chosen(config, environment, node, label)
    target = to or _previous_release(runtime, environment)
    _rollout(
        runtime, config, as_json, lambda s: deploy(s, config, environment, target, None, nodes)
    )


def _previous_release(runtime: Runtime, environment: str) -> str:
    """The newest release deployed to the environment before its current one."""
    from edeliver.core.deployment import SUCCEEDED

    deployments = runtime.deployments(runtime.project)
    try:
        versions = [
            r.version
            for r in deployments.history()
            if r.environment == environment and r.outcome == SUCCEEDED
        ]
    finally:
        deployments.close()
    earlier = [v for v in versions if v != versions[-1]] if versions else []
    if not earlier:
        raise UsageError(f"no earlier release was deployed to {environment}; name one with --to")
    return earlier[-1]
