"""`edeliver init`: the first config of a mix project, then the commands that come next."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from edeliver.cli.app import SET_UP, app, exits_on_errors, runtime_of
from edeliver.cli.node_commands import trust
from edeliver.core.domain.errors import UsageError

if TYPE_CHECKING:
    from edeliver.cli.composition import project_init

DEFAULT_ENVIRONMENT = "production"


@app.command(rich_help_panel=SET_UP)
@exits_on_errors
def init(
    ctx: typer.Context,
    node: Annotated[
        list[str] | None,
        typer.Option(
            "--node",
            metavar="NAME=[USER@]HOST[:PORT]:/PATH",
            help="A node to deploy to; repeat for more. Asked for when not given on a terminal.",
        ),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            metavar="NAME=NODE[,NODE...]",
            help=f"An environment and its nodes; repeat for more (default: {DEFAULT_ENVIRONMENT}"
            " with every node).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing .deliver/edeliver.toml.")
    ] = False,
    trust_keys: Annotated[
        bool,
        typer.Option("--trust", help="Pin the nodes' host keys now, without asking."),
    ] = False,
) -> None:
    """Write .deliver/edeliver.toml for the mix project here, from its mix.exs and your nodes.

    Example: edeliver init --node web1=deploy@10.0.0.11:/opt/app --trust
    """
    from edeliver.cli.composition import project_init

    runtime = runtime_of(ctx)
    mix = project_init.read_mix_project(runtime.project)
    nodes = [project_init.parse_node(text) for text in node or []] or _ask_for_nodes()
    environments = dict(project_init.parse_environment(text, nodes) for text in env or []) or {
        DEFAULT_ENVIRONMENT: [n.name for n in nodes]
    }
    text = project_init.render_config(mix, nodes, environments)
    project_init.write_config(runtime.project, text, force=force)
    typer.echo(f"wrote .deliver/edeliver.toml for {mix.app} ({len(nodes)} node(s))")
    added = project_init.ignore_generated_files(runtime.project)
    if added:
        typer.echo(f".gitignore: added {', '.join(added)}")
    first = next(iter(environments))
    if trust_keys or (_interactive() and typer.confirm(f"pin the host keys of {first} now?")):
        trust(ctx, first, yes=trust_keys)
    typer.echo(_next_steps(first, trusted=trust_keys))


def _ask_for_nodes() -> list[project_init.NodeSpec]:
    from edeliver.cli.composition import project_init

    if not _interactive():
        example = "edeliver init --node web1=deploy@10.0.0.11:/opt/app"
        raise UsageError(f"no --node given; e.g. {example}")
    nodes: list[project_init.NodeSpec] = []
    while True:
        answer = typer.prompt(
            "node NAME=[USER@]HOST[:PORT]:/PATH (empty when done)", default="", show_default=False
        )
        if not answer:
            if nodes:
                return nodes
            continue
        try:
            nodes.append(project_init.parse_node(answer))
        except UsageError as error:
            typer.echo(error, err=True)


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _next_steps(environment: str, *, trusted: bool) -> str:
    steps = [] if trusted else [f"edeliver nodes trust {environment}   # pin each node's host key"]
    steps += [
        "edeliver build                      # mix release → .deliver/releases",
        f"edeliver deploy {environment}",
    ]
    return "next:\n" + "\n".join(f"  {step}" for step in steps)
