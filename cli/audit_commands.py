"""Commands that read or settle the record: log, history, abandon."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from edeliver.cli import render
from edeliver.cli.app import AUDIT, ForceOption, JsonOption, app, exits_on_errors, run, runtime_of
from edeliver.cli.output import print_json
from edeliver.core.domain.config import EnvironmentConfig
from edeliver.core.domain.errors import DamagedHistory, NotFoundError

if TYPE_CHECKING:
    from edeliver.cli.composition import Runtime
    from edeliver.core.domain.deployment import Deployment
    from edeliver.core.domain.stored_history import StoredEntry
    from edeliver.core.usecases.operations import OperationSummary
    from edeliver.core.usecases.service import Deployments, DeploymentSummary


@app.command(rich_help_panel=AUDIT)
@exits_on_errors
def abandon(
    ctx: typer.Context,
    deployment_id: str,
    reason: Annotated[str, typer.Option(help="Why; recorded in the history.")],
    force: ForceOption = False,
) -> None:
    """Give up an interrupted deployment: release its environment's lock, record why.

    Example: edeliver abandon 3f2a9c1e --reason "nodes rebuilt by hand"
    """
    from edeliver.core.usecases.operations import abandon_operation, find_operation

    runtime = runtime_of(ctx)
    now = runtime.clock.now()
    at = now.isoformat(timespec="seconds")
    deployments = runtime.deployments()
    try:
        operation = find_operation(deployments, deployment_id)
        if operation is not None:  # its deployer died before it could end it
            abandon_operation(deployments, operation, reason, at)
            runtime.out().print(
                f"abandoned {operation.id[:8]}; {operation.environment} is unlocked"
            )
            return
        summary = deployments.find(deployment_id)
        try:
            deployment = deployments.load(deployment_id)
        except DamagedHistory:
            if not force:
                raise  # its message says `--force` ends it
            deployments.abandon_damaged(summary, reason, runtime.user, at)
        else:
            deployment.check_abandoning(reason)
            if not force:
                _refuse_while_its_deployer_holds_nodes(runtime, deployment, now)
            deployments.abandon(deployment, reason, runtime.user, at)
    finally:
        deployments.close()
    runtime.out().print(f"abandoned {summary.id[:8]}; {summary.environment} is unlocked")


def _refuse_while_its_deployer_holds_nodes(
    runtime: Runtime, deployment: Deployment, now: datetime
) -> None:
    """Ask the deployment's nodes whether its deployer still holds them (DESIGN §5); the
    environment's step timeout (the default if the configuration no longer has it) bounds how
    long a live deployer stays silent, for when no node answers."""
    from edeliver.core.usecases.liveness import refuse_abandoning_while_held

    config = runtime.config
    env = config.environments.get(deployment.environment)
    timeout = env.step_timeout if env else EnvironmentConfig.step_timeout
    shells = runtime.node_shells(deployment.mode)
    run(refuse_abandoning_while_held(deployment, shells, config.nodes, now, timeout))


@app.command(rich_help_panel=AUDIT)
@exits_on_errors
def log(
    ctx: typer.Context,
    deployment_id: Annotated[str | None, typer.Argument(help="Default: the latest.")] = None,
    as_json: JsonOption = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Wait for new events.")] = False,
) -> None:
    """Print the events of a deployment, oldest first.

    Example: edeliver log --follow
    """
    from edeliver.core.domain.stored_history import damage_of
    from edeliver.core.usecases.operations import find_operation

    runtime = runtime_of(ctx)
    deployments = runtime.recorded_deployments()
    if deployments is None:
        if deployment_id:
            raise NotFoundError(f"deployment {deployment_id}: not found, none recorded yet")
        runtime.output.note("no deployment recorded yet")
        return
    try:
        if not deployment_id and not deployments.history():
            runtime.output.note("no deployment recorded yet")  # like `history`: empty, exit 0
            return
        operation = find_operation(deployments, deployment_id) if deployment_id else None
        if operation is not None:  # an operation's events: short, ended when printed
            _print_entries(deployments.entries(UUID(operation.id)), as_json)
            return
        found = deployments.find(deployment_id) if deployment_id else deployments.latest_summary()
        stored = deployments.entries(UUID(found.id))
        _print_entries(stored, as_json)
        damage = damage_of(stored)
        if damage:  # printed what is there; say what is not, and how to end it
            raise DamagedHistory(
                f"deployment {found.id[:8]}: its stored history is damaged "
                f"({damage}); `edeliver abandon {found.id[:8]} --force --reason ...` ends it"
            )
        seen = stored[-1].version if stored else 0
        deployment = deployments.load(found.id)
        while follow and not deployment.finished:
            time.sleep(0.5)  # SQLite cannot push notifications; polling serves both stores
            deployment = deployments.load(found.id)
            seen = _print_events(deployments, deployment, seen, as_json)
    finally:
        deployments.close()


def _print_entries(stored: list[StoredEntry], as_json: bool) -> None:
    """Each stored event; a damaged one as a line saying what is wrong there."""
    for entry in stored:
        if entry.missing_before or entry.event is None:
            flagged = {"seq": entry.version, "damaged": entry.damage}
            if as_json:
                print_json(**flagged)
            else:
                typer.echo(f"!! {entry.damage}")
        if entry.event is not None:
            _print_event(entry.event, as_json)


def _print_events(
    deployments: Deployments, deployment: Deployment, after: int, as_json: bool
) -> int:
    for domain_event in deployments.events_of(deployment.id, after):
        after = _print_event(domain_event, as_json)
    return after


def _print_event(domain_event: Any, as_json: bool) -> int:
    record = render.event_record(domain_event)
    if as_json:
        print_json(**record)
    else:
        typer.echo(render.event_line(record))
    sys.stdout.flush()
    return int(record["seq"])


@app.command(rich_help_panel=AUDIT)
@exits_on_errors
def history(
    ctx: typer.Context,
    environment: Annotated[str | None, typer.Argument(help="Default: every environment.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List deployments: who deployed what, when, and how it ended.

    Example: edeliver history production --json
    """
    from edeliver.core.usecases.operations import operation_history

    runtime = runtime_of(ctx)
    deployments = runtime.recorded_deployments()
    rows: list[DeploymentSummary | OperationSummary] = []
    if deployments is not None:
        try:
            recorded: list[DeploymentSummary | OperationSummary] = [
                *deployments.history(),
                *operation_history(deployments),
            ]
            recorded.sort(key=lambda r: r.started_at)  # stable: each kind keeps its own order
            rows = [r for r in recorded if environment in (None, r.environment)]
        finally:
            deployments.close()
    if as_json:
        # Operations are listed beside deployments, each row saying its kind.
        print_json(deployments=[_history_record(r) for r in rows])
    else:
        runtime.out().print(render.history_rows(rows))


def _history_record(row: DeploymentSummary | OperationSummary) -> dict[str, Any]:
    from edeliver.core.usecases.operations import OperationSummary

    kind = "operation" if isinstance(row, OperationSummary) else "deployment"
    return {**vars(row), "kind": kind}
