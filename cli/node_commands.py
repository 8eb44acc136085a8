"""Commands about the nodes themselves: status, and trusting their host keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from edeliver.cli.app import AUDIT, SET_UP, JsonOption, app, exits_on_errors, run, runtime_of
from edeliver.cli.operation_commands import LabelOption, NodeOption, chosen_nodes
from edeliver.cli.output import print_json
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import HostKeyChanged, HostKeyError

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
    from edeliver.core.usecases.probes import mixed, probe_all

    runtime = runtime_of(ctx)
    config = runtime.config
    nodes = chosen_nodes(config, environment, node, label)
    shells = probing_shells(runtime)
    rows = run(probe_all(shells, nodes, runtime.node_addresses(nodes)))
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
    pinning = _Pinning(runtime, yes)
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

    def __init__(self, runtime: Runtime, yes: bool) -> None:
        self.runtime, self.shells, self.yes = runtime, runtime.node_shells(), yes
        self.target = runtime.pinning_file()
        self.pinned: set[str] = set()

    def route_of(self, node: NodeConfig) -> None:
        """Connect; while a hop's key is unknown, show it, pin it if confirmed, and again."""
        while True:
            try:
                run(_connect_and_close(self.shells, node))
            except HostKeyChanged:
                raise
            except HostKeyError:
                whose, line, fingerprint = run(self.runtime.host_key(node))
                if line in self.pinned:  # pinned, yet still unknown: checked in another file
                    raise
                typer.echo(f"{whose:<12} new key {fingerprint}")
                if not (
                    self.yes or typer.confirm(f"pin {fingerprint} for {whose} into {self.target}?")
                ):
                    return
                self.runtime.pin_host_key(line)
                self.pinned.add(line)
                typer.echo(f"{whose:<12} pinned in {self.target}")
                continue
            typer.echo(f"{node.name:<12} trusted")
            return


async def _connect_and_close(shells: NodeShells, node: NodeConfig) -> None:
    await (await shells.open(node)).close()
