"""Tasks and their legacy form: `edeliver tasks ENV` (the resolved order per stage, and why any
task is skipped) and `edeliver migrate-config` (edeliver 1.x's .deliver/config to edeliver.toml)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from edeliver.cli.app import SET_UP, JsonOption, app, exits_on_errors, runtime_of
from edeliver.cli.output import Output, print_json
from edeliver.core.domain.errors import UsageError
from edeliver.core.domain.tasks import Selection, TaskSpec, plan_by_stage, unmatched_tags

IncludeOption = Annotated[
    list[str] | None,
    typer.Option(metavar="TAG", help="Also run the optional tasks tagged TAG; repeatable."),
]
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option(metavar="TAG", help="Skip the tasks tagged TAG; repeatable."),
]
OnlyOption = Annotated[
    list[str] | None,
    typer.Option(metavar="TAG", help="Run only the tasks tagged TAG; repeatable."),
]


def selection_of(
    include: list[str] | None,
    exclude: list[str] | None,
    only: list[str] | None,
    specs: list[TaskSpec],
    output: Output,
) -> Selection:
    """The tags chosen on the command line; a tag no task carries is warned about."""
    chosen = Selection(frozenset(include or ()), frozenset(exclude or ()), frozenset(only or ()))
    for tag in unmatched_tags(specs, chosen):
        output.note(f"edeliver: warning: no task is tagged {tag!r}")
    return chosen


@app.command(rich_help_panel=SET_UP)
@exits_on_errors
def tasks(
    ctx: typer.Context,
    environment: str,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    only: OnlyOption = None,
    first_deploy: Annotated[bool, typer.Option(help="As on a node's first deploy.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show the tasks that would run in ENVIRONMENT, per stage in order, and why others not.

    Example: edeliver tasks production --include seed
    """
    runtime = runtime_of(ctx)
    runtime.config.environment(environment)
    found = [t.spec for t in runtime.tasks]
    selection = selection_of(include, exclude, only, found, runtime.output)
    stages = plan_by_stage(found, environment, selection, first_deploy)
    if as_json:
        print_json(stages=stage_rows(stages))
        return
    for line in stage_lines(stages):
        typer.echo(line)


Stages = list[tuple[str, list[tuple[TaskSpec, str | None]]]]


def stage_rows(stages: Stages) -> list[dict[str, Any]]:
    """The tasks per stage as `--json` shows them (tasks, plan)."""
    return [
        {"stage": stage, "tasks": [{"name": t.name, "where": t.where, "critical": t.critical,
                                    "runs": reason is None, "skipped_because": reason}
                                   for t, reason in entries]}
        for stage, entries in stages
    ]  # fmt: skip


def stage_lines(stages: Stages, indent: str = "") -> list[str]:
    """The tasks per stage for people: each stage, then its tasks, run or skipped and why."""
    lines = []
    for stage, entries in stages:
        lines.append(f"{indent}{stage}")
        for spec, reason in entries:
            what = f"{spec.where}{'' if spec.critical else ', not critical'}"
            verdict = f"{'skip' if reason else 'run ':<4}  {spec.name}  ({what})"
            lines.append(f"{indent}  {verdict}" + (f"  — {reason}" if reason else ""))
    return lines


@app.command(name="migrate-config", rich_help_panel=SET_UP)
@exits_on_errors
def migrate_config(
    ctx: typer.Context,
    write: Annotated[
        bool, typer.Option(help="Write .deliver/edeliver.toml (never over one).")
    ] = False,
) -> None:
    """Turn an edeliver 1.x .deliver/config into .deliver/edeliver.toml; list what stays behind.

    Example: edeliver migrate-config --write
    """
    from edeliver.cli.composition import CONFIG_FILE, migrate_project

    runtime = runtime_of(ctx)
    migration = migrate_project(runtime.project)
    target = runtime.project / CONFIG_FILE
    if write:
        if target.exists():
            raise UsageError(f"{CONFIG_FILE}: already exists; not overwritten")
        target.write_text(migration.toml)
        runtime.output.note(f"wrote {CONFIG_FILE}")
    else:
        typer.echo(migration.toml, nl=False)
    for line in migration.notes:
        runtime.output.note(line)
    for hook in migration.hooks:
        runtime.output.note(f"hook {hook}: found; it will run as a shell task at its stage")
