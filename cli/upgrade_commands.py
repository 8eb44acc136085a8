"""Hot code upgrades: `edeliver build upgrade` and `edeliver upgrade ENV` (docs/hot-upgrades.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

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
from edeliver.cli.rollout_commands import build_app, build_into_store, deploy_with_tasks
from edeliver.cli.task_commands import ExcludeOption, IncludeOption, OnlyOption
from edeliver.core.domain.app import app_name
from edeliver.core.domain.config import Config
from edeliver.core.domain.model import Artifact
from edeliver.core.usecases.builds import on_this_machine, pristine, provenance, refuse_same_version

if TYPE_CHECKING:
    from edeliver.cli.composition import Runtime


@app.command(rich_help_panel=DEPLOY)
@exits_on_errors
def upgrade(
    ctx: typer.Context,
    environment: str,
    version: VersionOption = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    only: OnlyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Hot-upgrade ENVIRONMENT (as if its mode were "upgrade"): no restart, same OS pids.

    Example: edeliver upgrade production --version 1.2.4
    """
    runtime = runtime_of(ctx)
    config = hot(runtime.config, environment)
    deploy_with_tasks(runtime, config, environment, version, (include, exclude, only), as_json)


def hot(config: Config, environment: str) -> Config:
    """The config with `environment` in mode "upgrade"."""
    env = dataclasses.replace(config.environment(environment), mode="upgrade")
    return dataclasses.replace(config, environments={**config.environments, environment: env})


@build_app.command(name="upgrade")
@exits_on_errors
def upgrade_package(
    ctx: typer.Context,
    from_version: Annotated[
        str | None,
        typer.Option("--from", metavar="VERSION", help="Default: the version the nodes run."),
    ] = None,
    to_version: Annotated[
        str | None,
        typer.Option("--to", metavar="VERSION", help="Default: a release built now."),
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option(
            "--environment", "-e", metavar="ENV", help="Whose nodes say what runs (--from)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Build a hot-upgrade package (appups and relup) from one version to the next, into the store.

    Example: edeliver build upgrade --from 1.2.3 --to 1.2.4
    """
    runtime = runtime_of(ctx)
    build_upgrade_command(runtime, from_version, to_version, environment, as_json)


def build_upgrade_command(
    runtime: Runtime,
    from_version: str | None,
    to_version: str | None,
    environment: str | None,
    as_json: bool,
) -> None:
    """`edeliver build upgrade`: the package from the running (or given) version to the new one."""
    app = app_name(runtime.config)
    store = runtime.store()
    old_version = from_version or _running_version(runtime, environment)
    old = run(pristine(store, app, old_version))
    new = run(store.artifact(app, to_version)) if to_version else build_into_store(runtime)
    refuse_same_version(app, old, new)
    old, new = run(on_this_machine(store, old)), run(on_this_machine(store, new))
    tarball, artifact, notes = runtime.build_upgrade(old, new)
    stored = run(store.put(tarball, artifact, extra=provenance(runtime.clock, runtime.user)))
    _report(notes, stored, as_json)


def _running_version(runtime: Runtime, environment: str | None) -> str:
    """The one version the environment's nodes run (asked of release_handler); else refuse."""
    from edeliver.core.usecases.probes import only_upgrade_environment, probe_all, running_version

    name = environment or only_upgrade_environment(runtime.config)
    nodes = runtime.config.nodes_of(name)
    shells = runtime.node_shells("upgrade")  # after: an unknown environment opens nothing
    return running_version(name, run(probe_all(shells, nodes)))


def _report(notes: list[str], stored: Artifact, as_json: bool) -> None:
    (old,) = stored.from_versions
    if as_json:
        fields = {
            "app": stored.app,
            "from": old,
            "to": stored.version,
            "sha256": stored.sha256,
            "size": stored.size,
            "location": stored.location,
            "notes": notes,
        }
        print_json(**fields)
        return
    for note in notes:
        typer.echo(f"  {note}")
    typer.echo(
        f"built upgrade {stored.app} {old} -> {stored.version}: {stored.size} bytes, "
        f"sha256 {stored.sha256[:16]}…, in {Path(stored.location).parent}"
    )
