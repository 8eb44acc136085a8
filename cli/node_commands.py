"""Commands about the nodes themselves: status, and trusting their host keys."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edeliver.cli.app import (
    AUDIT,
    SET_UP,
    JsonOption,
    Runtime,
    app,
    exits_on_errors,
    run,
    runtime_of,
)
from edeliver.cli.operation_commands import LabelOption, NodeOption, chosen_nodes
from edeliver.cli.output import print_json
from edeliver.core.config import Config, NodeConfig
from edeliver.core.errors import EdeliverError, HostKeyChanged, HostKeyError

if TYPE_CHECKING:
    from edeliver.core.ports import NodeShells

nodes_app = typer.Typer(
    help="Manage the nodes' SSH host keys.\n\nExample: edeliver nodes trust production",
    no_args_is_help=True,
)
app.add_typer(nodes_app, name="nodes", rich_help_panel=SET_UP)


@app.command(rich_help_panel=AUDIT)
@exits_on_errors
def status(
    ctx: typer.Context,
    environment: str,
    node: NodeOption = None,
    label: LabelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Per node: reachable, running version, boot version, releases on disk; whether the
    nodes run different versions (after a deploy to some of them, say).

    Example: edeliver status production
    """
    from edeliver.cli.composition import node_addresses

    runtime = runtime_of(ctx)
    config = runtime.load_config(runtime.project)
    nodes = chosen_nodes(config, environment, node, label)
    shells = probing_shells(runtime, config)
    rows = run(probe_all(shells, nodes, node_addresses(runtime.project, config, nodes)))
    mix = mixed(rows)
    if as_json:
        # One flag for the set: whether the nodes run different versions.
        print_json(environment=environment, nodes=rows, mixed=bool(mix))
    else:
        for row in rows:
            typer.echo(status_line(row))
        if mix:
            typer.echo(f"{environment} is mixed: {mix}")
    failures = [row["exit_code"] for row in rows if not row["reachable"]]
    if failures:  # 3 when a host key was refused (DESIGN §9), else 1
        raise typer.Exit(max(failures))


def probing_shells(runtime: Runtime, config: Config) -> NodeShells:
    """Shells whose probe asks release_handler what runs, is permanent and was run before
    wherever a VM runs: a VM upgraded hot still names on its command line the version it
    booted. Without an app name (it finds `bin/<app>`), the plain probe."""
    return runtime.node_shells(config, "upgrade" if config.app else "release")


async def probe_all(
    shells: NodeShells, nodes: tuple[NodeConfig, ...], addresses: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    import asyncio

    return list(await asyncio.gather(*(_probe(shells, n, addresses or {}) for n in nodes)))


async def _probe(
    shells: NodeShells, node: NodeConfig, addresses: Mapping[str, str]
) -> dict[str, Any]:
    row: dict[str, Any] = {"node": node.name, "address": addresses.get(node.name, node.address)}
    try:
        shell = await shells.open(node)
        try:
            facts = await shell.probe()
        finally:
            await shell.close()
    except EdeliverError as error:
        return {**row, "reachable": False, "error": str(error), "exit_code": error.exit_code}
    return {**row, "reachable": True, **facts.as_dict()}


def mixed(rows: list[dict[str, Any]]) -> str:
    """Which nodes run which version, when the reachable ones do not all run the same one
    (or boot the same one); "" when they agree."""
    reachable = [row for row in rows if row["reachable"]]
    versions: dict[str, list[str]] = {}
    for row in reachable:
        running = row["running_version"] or "nothing"
        versions.setdefault(running, []).append(row["node"])
    booting = {row["current_version"] for row in reachable}
    if len(versions) <= 1 and len(booting) <= 1:
        return ""
    return "; ".join(f"{version} on {', '.join(names)}" for version, names in versions.items())


def status_line(row: dict[str, Any]) -> str:
    if not row["reachable"]:
        return f"{row['node']:<12} unreachable  {row['error']}"
    releases = ", ".join(row["releases"]) or "none"
    return (
        f"{row['node']:<12} running {row['running_version'] or '-':<10} "
        f"boots {row['current_version'] or '-':<10} releases: {releases}  at {row['address']}"
    )


@nodes_app.command()
@exits_on_errors
def trust(
    ctx: typer.Context,
    environment: str,
    yes: Annotated[bool, typer.Option("--yes", help="Pin new keys without asking.")] = False,
) -> None:
    """Show each node's host key fingerprint and pin the new ones; a changed key is refused.

    Example: edeliver nodes trust production --yes
    """
    runtime = runtime_of(ctx)
    config = runtime.load_config(runtime.project)
    nodes = config.nodes_of(environment)  # an unknown environment: refused before anything opens
    target = _known_hosts_file(runtime.project, config)
    pinning = _Pinning(runtime, config, target, yes)
    changed = []
    for node in nodes:
        try:
            pinning.route_of(node)
        except HostKeyChanged as error:
            changed.append(str(error))
            typer.echo(f"{node.name:<12} CHANGED: refused", err=True)
    if changed:
        raise HostKeyChanged("; ".join(changed))


class _Pinning:
    """Pins the keys on nodes' routes into `target`, one hop at a time, jump hosts first."""

    def __init__(self, runtime: Runtime, config: Config, target: Path, yes: bool) -> None:
        from edeliver.cli.composition import ssh_config_files

        self.shells, self.target, self.yes = runtime.node_shells(config), target, yes
        self.files = ssh_config_files(runtime.project, config)
        self.known = str(target) if config.known_hosts else None
        self.pinned: set[str] = set()

    def route_of(self, node: NodeConfig) -> None:
        """Connect; while a hop's key is unknown, show it, pin it if confirmed, and again."""
        from edeliver.adapters.ssh import fetch_host_key, pin_host_key

        while True:
            try:
                run(_connect_and_close(self.shells, node))
            except HostKeyChanged:
                raise
            except HostKeyError:
                whose, line, fingerprint = run(fetch_host_key(node, self.files, self.known))
                if line in self.pinned:  # pinned, yet still unknown: checked in another file
                    raise
                typer.echo(f"{whose:<12} new key {fingerprint}")
                if not (
                    self.yes or typer.confirm(f"pin {fingerprint} for {whose} into {self.target}?")
                ):
                    return
                pin_host_key(self.target, line)
                self.pinned.add(line)
                typer.echo(f"{whose:<12} pinned in {self.target}")
                continue
            typer.echo(f"{node.name:<12} trusted")
            return


async def _connect_and_close(shells: NodeShells, node: NodeConfig) -> None:
    await (await shells.open(node)).close()


def _known_hosts_file(project: Path, config: Config) -> Path:
    """Where new keys are pinned: the configured known_hosts, else the user's own."""
    if config.known_hosts:
        path = Path(config.known_hosts).expanduser()
        return path if path.is_absolute() else project / path
    return Path("~/.ssh/known_hosts").expanduser()
