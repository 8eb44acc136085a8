"""Hot code upgrades: `edeliver build upgrade` and `edeliver upgrade ENV` (docs/hot-upgrades.md)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edeliver.adapters.clock import SystemClock
from edeliver.cli.app import (
    DEPLOY,
    JsonOption,
    Runtime,
    VersionOption,
    app,
    exits_on_errors,
    run,
    runtime_of,
)
from edeliver.cli.node_commands import probe_all
from edeliver.cli.output import print_json
from edeliver.cli.rollout_commands import build_app, build_into_store, deploy_with_tasks
from edeliver.cli.task_commands import ExcludeOption, IncludeOption, OnlyOption
from edeliver.core.config import Config
from edeliver.core.errors import NodeUnreachable, NotFoundError, NotUniformError, UsageError
from edeliver.core.model import Artifact

if TYPE_CHECKING:
    from edeliver.adapters.upgrade_build import UpgradeBuilt
    from edeliver.cli.composition import Store


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
    config = hot(runtime.load_config(runtime.project), environment)
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
    config = runtime.load_config(runtime.project)
    build_upgrade_command(runtime, config, from_version, to_version, environment, as_json)


def build_upgrade_command(
    runtime: Runtime,
    config: Config,
    from_version: str | None,
    to_version: str | None,
    environment: str | None,
    as_json: bool,
) -> None:
    """`edeliver build upgrade`: the package from the running (or given) version to the new one."""
    from edeliver.adapters.mix_build import BUILD_DIR
    from edeliver.adapters.upgrade_build import build_upgrade
    from edeliver.cli.composition import release_store

    app_name = _app(config)
    store = release_store(runtime.project, config)
    old_version = from_version or _running_version(runtime, config, environment)
    old = run(_pristine(store, app_name, old_version))
    new = (
        run(store.artifact(app_name, to_version))
        if to_version
        else build_into_store(runtime.project, config, output=runtime.output)
    )
    if new.version == old.version:
        raise UsageError(f"{app_name} {new.version} runs already; bump the version to upgrade")
    old, new = run(_here(store, old)), run(_here(store, new))
    built = build_upgrade(old, new, runtime.project / BUILD_DIR / "upgrades", runtime.project)
    stored = store.put(built.tarball, built.artifact, extra=_provenance())
    _report(built, stored, as_json)


def _app(config: Config) -> str:
    if not config.app:
        raise UsageError(f"{config.file}: app: not set and no mix.exs project name found")
    return config.app


async def _here(store: Store, release: Artifact) -> Artifact:
    """The release at a path on this machine, where the upgrade is built from: a local store's
    own file, or a copy a remote store's checksum was verified on (kept in the local cache)."""
    return dataclasses.replace(release, location=str(await store.local_file(release)))


async def _pristine(store: Store, app_name: str, version: str) -> Artifact:
    """The old release as the store has it; without it there is no relup to build."""
    try:
        artifact = await store.artifact(app_name, version)
    except NotFoundError as error:
        raise NotFoundError(
            f"{error}. An upgrade is built from the pristine {app_name} {version} release: build "
            f"it from that version's sources (`git checkout <its tag>` then `edeliver build`), "
            "or copy it into the store from where it was built"
        ) from None
    return artifact


def _running_version(runtime: Runtime, config: Config, environment: str | None) -> str:
    """The one version the environment's nodes run (asked of release_handler); else refuse."""
    name = environment or _only_upgrade_environment(config)
    nodes = config.nodes_of(name)
    shells = runtime.node_shells(config, "upgrade")  # after: an unknown environment opens nothing
    rows = run(probe_all(shells, nodes))
    down = [f"{r['node']} ({r['error']})" for r in rows if not r["reachable"]]
    if down:
        raise NodeUnreachable(
            "cannot learn the running version: " + "; ".join(down) + "; name it with --from"
        )
    by_version: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_version[row["running_version"] or "nothing"].append(row["node"])
    if len(by_version) != 1:
        listed = "; ".join(f"{v} on {', '.join(nodes)}" for v, nodes in by_version.items())
        plan = " and ".join(
            f"`edeliver build upgrade --from {v}`" for v in by_version if v != "nothing"
        )
        raise NotUniformError(
            f"the nodes of {name} run different versions ({listed}); build one upgrade per "
            f"version ({plan}, with the same --to): each node then takes the one from its version"
        )
    (version,) = by_version
    if version == "nothing":
        raise UsageError(f"no node of {name} runs a release: deploy one first (mode = release)")
    return version


def _only_upgrade_environment(config: Config) -> str:
    hot_ones = [e.name for e in config.environments.values() if e.mode == "upgrade"]
    if len(hot_ones) != 1:
        raise UsageError(
            "name the environment whose running version to upgrade from (--environment ENV) "
            "or the version (--from V)"
        )
    return hot_ones[0]


def _provenance() -> dict[str, str]:
    from edeliver.cli.composition import who

    return {"built_at": SystemClock().now().isoformat(timespec="seconds"), "built_by": who()}


def _report(built: UpgradeBuilt, stored: Artifact, as_json: bool) -> None:
    (old,) = stored.from_versions
    if as_json:
        fields = {
            "app": stored.app,
            "from": old,
            "to": stored.version,
            "sha256": stored.sha256,
            "size": stored.size,
            "location": stored.location,
            "notes": list(built.notes),
        }
        print_json(**fields)
        return
    for note in built.notes:
        typer.echo(f"  {note}")
    typer.echo(
        f"built upgrade {stored.app} {old} -> {stored.version}: {stored.size} bytes, "
        f"sha256 {stored.sha256[:16]}…, in {Path(stored.location).parent}"
    )
