"""Looking into an environment's running release: eval, rpc, lock status.

None of these takes a lock or records anything: `eval` and `rpc` run the user's code (their
output is shown with the deployer's secrets hidden, each node's bounded to its last 64 KiB).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edeliver.cli.app import (
    INTERRUPTED_EXIT_CODE,
    OPERATE,
    JsonOption,
    app,
    exits_on_errors,
    run,
    runtime_of,
)
from edeliver.cli.operation_commands import (
    LabelOption,
    NodeOption,
    chosen_nodes,
    on_node,
    per_node,
    show_results,
)
from edeliver.cli.output import Output, print_json
from edeliver.cli.terminal import raw_terminal
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.redaction import Redactor

if TYPE_CHECKING:
    from edeliver.cli.composition import OpenNodeControl, Runtime

CodeArgument = Annotated[str, typer.Argument(metavar="EXPR", help="Elixir code.")]
lock_app = typer.Typer(
    help="Who holds an environment and its nodes.\n\nExample: edeliver lock status production",
    no_args_is_help=True,
)
app.add_typer(lock_app, name="lock", rich_help_panel=OPERATE)


_IN_RELEASE = {  # `bin/<app> COMMAND` -> its help
    "eval": """Evaluate Elixir code with the current release's `bin/<app> eval` on each node (a
    new VM with the app's code loaded, not the running one); each node's output.

    Example: edeliver eval production 'IO.puts(Application.spec(:my_app, :vsn))'
    """,
    "rpc": """Evaluate Elixir code in the running VM of each node (`bin/<app> rpc`); each node's
    output.

    Example: edeliver rpc production 'IO.inspect(:erlang.memory(:total))'
    """,
}


def _in_release_command(command: str) -> None:
    """Register `edeliver COMMAND ENV EXPR [--node] [--label] [--json]`."""

    @app.command(name=command, help=_IN_RELEASE[command], rich_help_panel=OPERATE)
    @exits_on_errors
    def in_release(
        ctx: typer.Context,
        environment: str,
        code: CodeArgument,
        node: NodeOption = None,
        label: LabelOption = None,
        as_json: JsonOption = False,
    ) -> None:
        _in_release(runtime_of(ctx), command, environment, code, node, label, as_json)


for _command in _IN_RELEASE:
    _in_release_command(_command)


def _in_release(
    runtime: Runtime,
    command: str,
    environment: str,
    code: str,
    node: list[str] | None,
    label: list[str] | None,
    as_json: bool,
) -> None:
    """Run `bin/<app> eval|rpc` on each chosen node at once; exit 1 if one did not exit 0."""
    config = runtime.config
    nodes = chosen_nodes(config, environment, node, label)
    open_control = runtime.node_controls()
    from edeliver.cli.composition import deployer_secrets

    hide = deployer_secrets(config)
    statuses: dict[str, int] = {}

    async def ask(one: NodeConfig) -> str:
        result = await on_node(open_control, one, lambda c: c.in_release(command, code))
        statuses[one.name] = result.status
        return hide(result.output).rstrip()

    answers = run(per_node(nodes, ask))
    rows: list[dict[str, Any]] = [
        {"node": n.name, "ok": ok and statuses[n.name] == 0, "exit_status": statuses.get(n.name),
         "output": said}
        for n, (ok, said, _) in zip(nodes, answers, strict=True)
    ]  # fmt: skip
    if as_json:
        print_json(environment=environment, command=command, nodes=rows)
    else:
        for row in rows:
            for line in row["output"].splitlines() or [""]:
                typer.echo(f"{row['node']} | {line}".rstrip())
    for row in rows:
        if not row["ok"]:  # after the output: what went wrong, one line per node
            status = row["exit_status"]
            why = f"`{command}` exited {status}" if status is not None else row["output"]
            typer.echo(f"edeliver: {row['node']}: {why}", err=True)
    exit_codes = [exit_code for ok, _, exit_code in answers if not ok]
    if exit_codes or not all(row["ok"] for row in rows):
        raise typer.Exit(max(exit_codes, default=1))


@lock_app.command(name="status")
@exits_on_errors
def lock_status(ctx: typer.Context, environment: str, as_json: JsonOption = False) -> None:
    """Who holds the environment's lock (a deployment or an operation), and each node's.

    Example: edeliver lock status production
    """
    runtime = runtime_of(ctx)
    config = runtime.config
    nodes = config.nodes_of(environment)
    held = _environment_holder(runtime, config.app or "", environment)
    open_control = runtime.node_controls()
    answers = run(per_node(nodes, lambda n: _node_holder(open_control, n)))
    rows = [
        {"node": n.name, "result": _lock_result(ok, said), "ok": ok, "detail": said}
        for n, (ok, said, _) in zip(nodes, answers, strict=True)
    ]
    if as_json:
        print_json(environment=environment, held_by=held, nodes=rows)
    else:
        typer.echo(f"{environment}: " + (held["describe"] if held else "free"))
        show_results(runtime, rows, False, {"title": f"node locks of {environment}"})
    exit_codes = [exit_code for ok, _, exit_code in answers if not ok]
    if exit_codes:
        raise typer.Exit(max(exit_codes))


def _environment_holder(runtime: Runtime, app: str, environment: str) -> dict[str, Any] | None:
    deployments = runtime.recorded_deployments()
    if deployments is None:
        return None
    try:
        lock = deployments.environment_lock(app, environment)
    finally:
        deployments.close()
    if lock.deployment_id is None:
        return None
    return {
        "id": lock.deployment_id, "what": lock.what, "holder": lock.holder,
        "since": lock.since, "describe": f"locked by {lock.held_by()}",
    }  # fmt: skip


async def _node_holder(open_control: OpenNodeControl, node: NodeConfig) -> str:
    holder = await on_node(open_control, node, lambda c: c.lock_holder())
    return holder.describe() if holder else ""


def _lock_result(ok: bool, said: str) -> str:
    if not ok:
        return "unknown"
    return "locked" if said else "free"


@app.command(rich_help_panel=OPERATE)
@exits_on_errors
def logs(
    ctx: typer.Context,
    environment: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="How many of each node's last lines.")
    ] = 20,
    node: NodeOption = None,
    label: LabelOption = None,
) -> None:
    """The release's log (run_erl's erlang.log) from every node, each line after its node's
    name; with -f, new lines as the nodes write them.

    Example: edeliver logs production -f --lines 50
    """
    runtime = runtime_of(ctx)
    config = runtime.config
    nodes = chosen_nodes(config, environment, node, label)
    open_control = runtime.node_controls()
    from edeliver.cli.composition import deployer_secrets

    hide = deployer_secrets(config)
    if follow:
        try:
            run(_follow_logs(open_control, nodes, lines, hide, runtime.output))
        except KeyboardInterrupt:  # how following is meant to end
            raise typer.Exit(INTERRUPTED_EXIT_CODE) from None
        return
    answers = run(per_node(nodes, lambda n: on_node(open_control, n, lambda c: c.log_lines(lines))))
    for one, (ok, said, _) in zip(nodes, answers, strict=True):
        if not ok:
            typer.echo(f"edeliver: {said}", err=True)
        for line in said.splitlines() if ok else ():
            typer.echo(f"{one.name} | {hide(line)}")
    exit_codes = [exit_code for ok, _, exit_code in answers if not ok]
    if exit_codes:
        raise typer.Exit(max(exit_codes))


async def _follow_logs(
    open_control: OpenNodeControl,
    nodes: Sequence[NodeConfig],
    lines: int,
    hide: Redactor,
    output: Output,
) -> None:
    """Every node's log followed at once; once all of them follow, a note says so (not in -q).
    A node whose log cannot be followed is one line on stderr; the others go on."""
    waiting = {n.name for n in nodes}

    def following(name: str) -> None:
        waiting.discard(name)
        if not waiting:
            names = ", ".join(n.name for n in nodes)
            output.note(f"edeliver: following the logs of {names} (Ctrl-C ends)")

    async def one(node: NodeConfig) -> None:
        def printed(line: str) -> None:
            typer.echo(f"{node.name} | {hide(line)}")
            sys.stdout.flush()

        await on_node(
            open_control, node, lambda c: c.follow_log(lines, printed, lambda: following(node.name))
        )

    answers = await per_node(nodes, lambda n: _as_text(one(n)))
    failed = [(said, code) for ok, said, code in answers if not ok]
    for said, _ in failed:
        typer.echo(f"edeliver: {said}", err=True)
    if failed:
        raise typer.Exit(max(code for _, code in failed))


async def _as_text(done: Awaitable[None]) -> str:
    await done
    return ""


@app.command(rich_help_panel=OPERATE)
@exits_on_errors
def console(ctx: typer.Context, environment: str, node: str) -> None:
    """An interactive remote console (IEx) in the running release of one node, over SSH.

    Example: edeliver console production web1
    """
    runtime = runtime_of(ctx)
    config = runtime.config
    (chosen,) = chosen_nodes(config, environment, [node], None)
    open_control = runtime.node_controls()
    with raw_terminal() as terminal:
        status = run(on_node(open_control, chosen, lambda c: c.console(terminal)))
    if status != 0:
        raise typer.Exit(1)
