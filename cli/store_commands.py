"""`edeliver releases`: what the store holds; `releases prune`: drop what no node needs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from edeliver.cli.app import BUILD, JsonOption, exits_on_errors, run, runtime_of
from edeliver.cli.app import app as root
from edeliver.cli.node_commands import probing_shells
from edeliver.cli.output import print_json
from edeliver.core.domain.app import app_name
from edeliver.core.domain.model import Artifact
from edeliver.core.ports import ReleaseStore

if TYPE_CHECKING:
    from edeliver.core.usecases.retention import PrunePlan

releases_app = typer.Typer()
root.add_typer(releases_app, name="releases", rich_help_panel=BUILD)


@releases_app.callback(invoke_without_command=True)
@exits_on_errors
def releases(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the stored versions, oldest first, with kind, size, platform and provenance.

    Example: edeliver releases --json
    """
    if ctx.invoked_subcommand:
        return
    runtime = runtime_of(ctx)
    config = runtime.config
    store = runtime.store()
    app = app_name(config)
    stored = run(_artifacts(store, app))
    if as_json:
        print_json(app=app, store=config.store.url, releases=[_row(a) for a in stored])
    elif not stored:
        typer.echo(f"no release of {app} in the store {config.store.url}")
    for artifact in stored if not as_json else ():
        typer.echo(_line(artifact))


@releases_app.command(name="prune")
@exits_on_errors
def prune_command(
    ctx: typer.Context,
    keep: Annotated[int, typer.Option("--keep", min=1, help="How many newest versions stay.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove all but the KEEP newest versions, never one any node runs or would roll back to.

    Example: edeliver releases prune --keep 5 --dry-run
    """
    from edeliver.core.usecases.retention import prune

    runtime = runtime_of(ctx)
    store = runtime.store()
    nodes = tuple(runtime.config.nodes.values())
    shells = probing_shells(runtime)
    plan = run(prune(store, shells, nodes, app_name(runtime.config), keep, dry_run=dry_run))
    if as_json:
        print_json(removed=list(plan.removed), kept=dict(plan.kept), dry_run=dry_run)
    else:
        _print_plan(plan, dry_run)


async def _artifacts(store: ReleaseStore, app: str) -> list[Artifact]:
    return [await store.artifact(app, v) for v in await store.versions(app)]


def _row(artifact: Artifact) -> dict[str, Any]:
    return {
        "version": artifact.version,
        "kind": artifact.kind,
        "from_versions": list(artifact.from_versions),
        "size": artifact.size,
        "sha256": artifact.sha256,
        "platform": str(artifact.platform),
        "git_revision": artifact.git_revision,
        "built_at": artifact.built_at,
        "otp": artifact.otp,
        "elixir": artifact.elixir,
    }


def _line(artifact: Artifact) -> str:
    upgrade = f" from {', '.join(artifact.from_versions)}" if artifact.from_versions else ""
    revision = f" git {artifact.git_revision[:10]}" if artifact.git_revision else ""
    return (
        f"{artifact.version:<12} {artifact.kind}{upgrade:<8} {artifact.size:>11} bytes  "
        f"{artifact.platform}  {artifact.built_at or '-'}{revision}  sha256 {artifact.sha256[:12]}"
    )


def _print_plan(plan: PrunePlan, dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for version in plan.removed:
        typer.echo(f"{verb:<12} {version}")
    for version, why in plan.kept.items():
        typer.echo(f"{'kept':<12} {version}  ({why})")
