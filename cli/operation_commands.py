"""Operating an environment's running release: start, stop, restart (recorded), ping (read).

Each takes `--node NAME` / `--label L` (repeatable) to act on part of the environment, and shows
one result per node: a table on a terminal, plain lines in pipes, a JSON document with `--json`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import uuid4

import typer
from rich.table import Table

from edeliver.cli.app import OPERATE, JsonOption, app, exits_on_errors, run, runtime_of
from edeliver.cli.output import print_json
from edeliver.core.domain.config import Config, NodeConfig
from edeliver.core.domain.errors import EdeliverError, UsageError
from edeliver.core.domain.node_filter import is_subset, selected_nodes

if TYPE_CHECKING:
    from edeliver.cli.composition import NodeControl, OpenNodeControl, Runtime
    from edeliver.core.domain.operation import Operation
    from edeliver.core.usecases.operations import Act

NodeOption = Annotated[
    list[str] | None,
    typer.Option("--node", metavar="NAME", help="Only this node of the environment (repeatable)."),
]
LabelOption = Annotated[
    list[str] | None,
    typer.Option("--label", metavar="LABEL", help="Only the nodes with this label (repeatable)."),
]
T = TypeVar("T")
_STYLE = {"ok": "green", "up": "green", "failed": "red", "down": "red", "skipped": "dim"}


def chosen_nodes(
    config: Config, environment: str, node: list[str] | None, label: list[str] | None
) -> tuple[NodeConfig, ...]:
    """The environment's nodes that the --node / --label options select (all without them)."""
    return selected_nodes(config, environment, node or (), label or ())


# action (core.operations' START, STOP, RESTART) -> its help; the commands are alike but for
# what they do to a node. Literal names: registering commands loads no event-sourced core.
_OPERATIONS = {
    "start": """Start the release `current` points to where it is not running, batch by batch.

    Example: edeliver start production --node web2
    """,
    "stop": """Stop the release's VM on each node (the stop command, then signals), batch by batch.

    Example: edeliver stop staging --label eu
    """,
    "restart": """Restart the release on each node in batches of max_parallel, each health-checked
    before the next batch starts; a node that does not come back stops the restart there.

    Example: edeliver restart production
    """,
}


def _operation_command(action: str) -> None:
    """Register `edeliver ACTION ENV [--node] [--label] [--json]`."""

    @app.command(name=action, help=_OPERATIONS[action], rich_help_panel=OPERATE)
    @exits_on_errors
    def command(
        ctx: typer.Context,
        environment: str,
        node: NodeOption = None,
        label: LabelOption = None,
        as_json: JsonOption = False,
    ) -> None:
        runtime = runtime_of(ctx)
        config = runtime.config
        nodes = chosen_nodes(config, environment, node, label)
        run_operation(runtime, config, environment, action, nodes, as_json)


for _action in _OPERATIONS:
    _operation_command(_action)


def run_operation(
    runtime: Runtime,
    config: Config,
    environment: str,
    action: str,
    nodes: Sequence[NodeConfig],
    as_json: bool,
    act: Act | None = None,
) -> None:
    """Run one recorded operation and show each node's result; exit 1 if a node failed."""
    from edeliver.cli.composition import deployer_secrets
    from edeliver.core.domain.operation import SUCCEEDED
    from edeliver.core.usecases.operations import OperationRequest, operate

    open_control = runtime.node_controls()
    by_name = {n.name: n for n in nodes}
    request = OperationRequest(
        app=config.app or "",
        environment=environment,
        action=action,
        nodes=tuple(by_name),
        max_parallel=config.environment(environment).policy.max_parallel,
        subset=is_subset(config, environment, nodes),
    )
    deployments = runtime.deployments()
    try:
        operation = run(
            operate(
                request, lambda name: open_control(by_name[name]), deployments,
                runtime.clock, runtime.user, str(uuid4()), act, deployer_secrets(config),
            )
        )  # fmt: skip
    finally:
        deployments.close()
    show_results(runtime, _operation_rows(operation), as_json, _operation_head(operation))
    if operation.outcome != SUCCEEDED:
        raise typer.Exit(1)


@app.command(rich_help_panel=OPERATE)
@exits_on_errors
def migrate(
    ctx: typer.Context,
    environment: str,
    node: Annotated[
        str | None,
        typer.Option("--node", metavar="NAME", help="Where (default: the environment's first)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the environment's migrations once, on one node: the function that
    `[environments.ENV] migrate` names, through the current release's `eval`; recorded.

    Example: edeliver migrate production
    """
    from edeliver.core.domain.operation import MIGRATE
    from edeliver.core.usecases.operations import migration

    runtime = runtime_of(ctx)
    config = runtime.config
    function = config.environment(environment).migrate
    if not function:
        raise UsageError(
            f"{config.file}: environments.{environment}.migrate: not set; name the function "
            'that runs the migrations, e.g. migrate = "MyApp.Release.migrate"'
        )
    first = chosen_nodes(config, environment, [node] if node else None, None)[:1]
    run_operation(runtime, config, environment, MIGRATE, first, as_json, migration(function))


def _operation_head(operation: Operation) -> dict[str, Any]:
    return {
        "operation": str(operation.id),
        "action": operation.action,
        "environment": operation.environment,
        "outcome": operation.outcome,
        "title": f"{operation.action} {operation.environment}: {operation.outcome} "
        f"({operation.short_id})",
    }


def _operation_rows(operation: Operation) -> list[dict[str, Any]]:
    from edeliver.core.domain.operation import NODE_OK

    return [
        {
            "node": node,
            "result": operation.outcomes.get(node, ""),
            "ok": operation.outcomes.get(node) == NODE_OK,
            "detail": operation.details.get(node, ""),
        }
        for node in operation.nodes
    ]


@app.command(rich_help_panel=OPERATE)
@exits_on_errors
def ping(
    ctx: typer.Context,
    environment: str,
    node: NodeOption = None,
    label: LabelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Is the app up on each node: its VM runs and the health check passes. Changes nothing.

    Example: edeliver ping production
    """
    runtime = runtime_of(ctx)
    config = runtime.config
    nodes = chosen_nodes(config, environment, node, label)
    open_control = runtime.node_controls()
    answers = run(per_node(nodes, lambda n: on_node(open_control, n, lambda c: c.ping())))
    rows = [
        {"node": n.name, "result": "up" if ok else "down", "ok": ok, "detail": said}
        for n, (ok, said, _) in zip(nodes, answers, strict=True)
    ]
    head = {"environment": environment, "title": f"ping {environment}"}
    show_results(runtime, rows, as_json, head)
    exit_codes = [code for ok, _, code in answers if not ok]
    if exit_codes:  # 3 when a host key was refused (DESIGN §9), else 1
        raise typer.Exit(max(exit_codes))


async def on_node(
    open_control: OpenNodeControl, node: NodeConfig, use: Callable[[NodeControl], Awaitable[T]]
) -> T:
    """`use` a connection to the node's release, closed after."""
    control = await open_control(node)
    try:
        return await use(control)
    finally:
        await control.close()


Answer = tuple[bool, str, int]  # answered, what it said (or why not), the exit code if not


async def per_node(
    nodes: Sequence[NodeConfig], ask: Callable[[NodeConfig], Awaitable[str]]
) -> list[Answer]:
    """Ask every node at once; each node's answer, or its error as one line and exit code."""

    async def one(node: NodeConfig) -> Answer:
        try:
            return True, await ask(node), 0
        except EdeliverError as error:
            return False, str(error), error.exit_code

    import asyncio

    return list(await asyncio.gather(*(one(n) for n in nodes)))


def show_results(
    runtime: Runtime, rows: list[dict[str, Any]], as_json: bool, head: dict[str, Any]
) -> None:
    """One result per node: a JSON document, a table on a terminal, plain lines in pipes."""
    if as_json:
        print_json(**{k: v for k, v in head.items() if k != "title"}, nodes=rows)
        return
    console = runtime.out()
    if not console.is_terminal:
        for row in rows:
            typer.echo(f"{row['node']:<12} {row['result']:<8} {row['detail']}".rstrip())
        return
    table = Table(title=head["title"])
    for column in ("node", "result", "detail"):
        table.add_column(column)
    for row in rows:
        style = _STYLE.get(row["result"], "")
        table.add_row(row["node"], f"[{style}]{row['result']}[/]", row["detail"])
    console.print(table)
