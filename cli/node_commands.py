"""Commands about the nodes themselves: status, and trusting their host keys."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edeliver.cli.app import AUDIT, SET_UP, JsonOption, app, exits_on_errors, run, runtime_of
from edeliver.cli.operation_commands import LabelOption, NodeOption, chosen_nodes
from edeliver.core.config import NodeConfig
from edeliver.core.errors import HostKeyChanged, HostKeyError

if TYPE_CHECKING:
    from edeliver.cli.composition import Runtime
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
    from edeliver.core.probes import mixed, probe_all

    runtime = runtime_of(ctx)
    config = runtime.config
    nodes = chosen_nodes(config, environment, node, label)
    shells = probing_shells(runtime)
    rows = run(probe_all(shells, nodes, runtime.node_addresses(nodes)))
    mix = mixed(rows)
    if as_json:
        typer.echo(json.dumps([{**row, "mixed": bool(mix)} for row in rows]))
    else:
        for row in rows:
            typer.echo(status_line(row))
        if mix:
            typer.echo(f"{environment} is mixed: {mix}")
    failures = [row["exit_code"] for row in rows if not row["reachable"]]
    if failures:  # 3 when a host key was refused (DESIGN §9), else 1
        raise typer.Exit(max(failures))


def probing_shells(runtime: Runtime) -> NodeShells:
    """Shells whose probe asks release_handler what runs, is permanent and was run before
    wherever a VM runs: a VM upgraded hot still names on its command line the version it
    booted. Without an app name (it finds `bin/<app>`), the plain probe."""
    return runtime.node_shells("upgrade" if runtime.config.app else "release")


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
    nodes = runtime.config.nodes_of(environment)  # unknown: refused before anything opens
    target = runtime.pinning_file()
    shells = runtime.node_shells()
    changed = []
    for node in nodes:
        try:
            run(_connect_and_close(shells, node))
            typer.echo(f"{node.name:<12} trusted")
            continue
        except HostKeyChanged as error:
            changed.append(str(error))
            typer.echo(f"{node.name:<12} CHANGED: refused", err=True)
            continue
        except HostKeyError:
            pass
        line, fingerprint = run(runtime.host_key(node))
        typer.echo(f"{node.name:<12} new key {fingerprint}")
        if yes or typer.confirm(f"pin {fingerprint} for {node.name} into {target}?"):
            runtime.pin_host_key(line)
            typer.echo(f"{node.name:<12} pinned in {target}")
    if changed:
        raise HostKeyChanged("; ".join(changed))


async def _connect_and_close(shells: NodeShells, node: NodeConfig) -> None:
    await (await shells.open(node)).close()
