"""`edeliver plan ENV`: what a deployment would do, read from the config, the store and the
project's tasks; it changes nothing and records nothing (no events database is opened)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from edeliver.cli import render
from edeliver.cli.app import (
    DEPLOY,
    JsonOption,
    VersionOption,
    app,
    exits_on_errors,
    run,
    runtime_of,
)
from edeliver.cli.output import print_json
from edeliver.cli.task_commands import (
    ExcludeOption,
    IncludeOption,
    OnlyOption,
    selection_of,
    stage_lines,
    stage_rows,
)
from edeliver.core.domain.config import Config
from edeliver.core.domain.tasks import plan_by_stage

if TYPE_CHECKING:
    from edeliver.cli.composition import Runtime


@app.command(rich_help_panel=DEPLOY)
@exits_on_errors
def plan(
    ctx: typer.Context,
    environment: str,
    version: VersionOption = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    only: OnlyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what a deployment to ENVIRONMENT would do (release, store, nodes as SSH resolves
    them, batches, steps, tasks per stage); change nothing, record nothing.

    Example: edeliver plan production --version 1.2.3
    """
    from edeliver.core.usecases.planning import plan as plan_of

    runtime = runtime_of(ctx)
    config = runtime.config
    planned = plan_of(config, environment, runtime.node_addresses(config.nodes_of(environment)))
    release = _release_to_deploy(runtime, config, version)
    tasks = [t.spec for t in runtime.tasks]
    selection = selection_of(include, exclude, only, tasks, runtime.output)
    stages = plan_by_stage(tasks, environment, selection, first_deploy=False)
    if as_json:
        shown = planned.as_dict()
        print_json(
            environment=shown.pop("environment"), version=release, store=config.store.url,
            **shown, tasks=stage_rows(stages),
        )  # fmt: skip
        return
    typer.echo(f"release: {_release_line(config, release)}, from the store {config.store.url}")
    lines = render.plan_lines(planned)
    lines.append("tasks:" if stages else "tasks: none")
    lines += stage_lines(stages, indent="  ")
    for line in [*lines, "(a plan changes nothing)"]:
        typer.echo(line)


def _release_line(config: Config, release: str | None) -> str:
    if not config.app:
        return "none: app is not set and no mix.exs names it"
    return f"{config.app} {release or 'none in the store yet (`edeliver build` puts one there)'}"


def _release_to_deploy(runtime: Runtime, config: Config, version: str | None) -> str | None:
    """The version a deploy would roll out (None: the store holds none yet, or no app is set
    to look for, which a deploy would refuse but a plan of the nodes need not); a named
    version the store does not hold is refused as a deploy would refuse it."""
    from edeliver.core.usecases.planning import artifact_to_deploy

    if not config.app:
        return None
    store = runtime.store()
    if version is None and not run(store.versions(config.app)):
        return None
    return run(artifact_to_deploy(store, config.app, version)).version
