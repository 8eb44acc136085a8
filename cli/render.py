"""Turning deployments and events into what a person or a program reads.

Human output goes through rich (a live row per node on a terminal, plain lines otherwise);
`--json` output is one JSON document, or JSON lines for streams, on stdout.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from edeliver.cli.output import Output, StepLines
from edeliver.core.domain.redaction import Redactor

if TYPE_CHECKING:
    from edeliver.core.domain.deployment import Deployment
    from edeliver.core.usecases.operations import OperationSummary
    from edeliver.core.usecases.planning import Plan
    from edeliver.core.usecases.service import DeploymentSummary

_STATE_STYLE = {
    "updated": "green",
    "skipped": "dim",
    "failed": "red",
    "halted": "yellow",
    "rolled_back": "yellow",
    "rollback_failed": "bold red",
    "rolling_back": "magenta",
}
_BASE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def event_record(domain_event: Any) -> dict[str, Any]:
    """One stored event as a flat, JSON-ready dict; its texts shown without any secret of this
    environment (events stored before output was redacted may still hold some)."""
    hide = _printing_redactor()
    fields = {
        k: hide(v) if isinstance(v, str) else v
        for k, v in vars(domain_event).items()
        if k not in _BASE_FIELDS
    }
    timestamp = domain_event.timestamp
    return {
        "at": timestamp.isoformat() if isinstance(timestamp, datetime) else str(timestamp),
        "deployment": str(domain_event.originator_id),
        "seq": domain_event.originator_version,
        "event": type(domain_event).__name__,
        **fields,
    }


@functools.cache
def _printing_redactor() -> Redactor:
    from edeliver.cli.composition import deployer_secrets

    return deployer_secrets()


def event_line(record: dict[str, Any]) -> str:
    """One event as a log line for people."""
    details = {k: v for k, v in record.items() if k not in ("at", "deployment", "seq", "event")}
    if record["event"] == "NodeTransitioned":
        text = f"{details['node']}: {details['src']} -{details['trigger']}-> {details['dest']}"
        text += f"  ({details['detail']})" if details.get("detail") else ""
    elif record["event"] == "TaskStarted":
        where = details["node"] or "local"
        text = f"{where}: task {details['task']} at {details['stage']}: started"
        text += f" (limit {details['timeout']:g}s)" if details.get("timeout") else ""
    elif record["event"] == "TaskRan":
        text = f"{details['node'] or 'local'}: task {details['task']} at {details['stage']}: "
        text += details["outcome"]
        if details["outcome"] != "ok" and details.get("output"):
            text += "".join(f"\n    | {line}" for line in details["output"].splitlines())
    else:
        text = " ".join(f"{k}={_short(v)}" for k, v in details.items())
    where = f"{record['at'][:19]}  {record['deployment'][:8]} #{record['seq']:<4}"
    return f"{where} {record['event']:<18} {text}"


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 120 else text[:117] + "..."


def summary(deployment: Deployment) -> dict[str, Any]:
    """The outcome of a deployment, node by node."""
    return {
        "id": str(deployment.id),
        "app": deployment.app,
        "environment": deployment.environment,
        "version": deployment.release,
        "subset": deployment.subset,
        "outcome": deployment.outcome,
        "escalated": deployment.escalated,
        "nodes": {
            node: {"state": state, "reason": deployment.reasons.get(node, "")}
            for node, state in deployment.states.items()
        },
    }


def final_line(deployment: Deployment) -> str:
    """The outcome in one line: what `-q` prints of a rollout (a subset names its nodes)."""
    part = f" (only {', '.join(deployment.order)})" if deployment.subset else ""
    return (
        f"{deployment.app} {deployment.release} → {deployment.environment}{part}: "
        f"{deployment.outcome} ({deployment.short_id})"
    )


def print_summary(console: Console, deployment: Deployment) -> None:
    table = Table(title=final_line(deployment))
    for column in ("node", "state", "reason"):
        table.add_column(column)
    for node, state in deployment.states.items():
        style = _STATE_STYLE.get(state, "")
        reason = escape(first_line(deployment.reasons.get(node, "")))
        table.add_row(node, f"[{style}]{state}[/]" if style else state, reason)
    console.print(table)
    if deployment.end_reason:
        console.print(deployment.end_reason, markup=False)
    if deployment.outcome != "succeeded":
        console.print(f"the whole story: edeliver log {deployment.short_id}")


def first_line(text: str, limit: int = 160) -> str:
    """A reason short enough for a table row; `edeliver log` shows all of it."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def history_rows(rows: Iterable[DeploymentSummary | OperationSummary]) -> Table:
    """Deployments and operations (restart, stop...) in one table, in the order they started."""
    table = Table(title="deployments and operations")
    for column in ("id", "environment", "what", "who", "started", "outcome", "ended"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.id[:8],
            row.environment,
            _what(row),
            row.started_by,
            row.started_at,
            row.outcome or "[yellow]unfinished[/]",
            row.ended_at or "",
        )
    return table


def _what(row: DeploymentSummary | OperationSummary) -> str:
    """A deployment's version; an operation's action and, for part of an environment, nodes."""
    from edeliver.core.usecases.operations import OperationSummary

    if isinstance(row, OperationSummary):
        return f"{row.action} {', '.join(row.nodes)}" if row.subset else row.action
    return f"{row.version} to {', '.join(row.nodes)}" if row.subset else row.version


def plan_lines(plan: Plan) -> list[str]:
    """The dry run of a deployment, as plain lines."""
    environment, policy = plan.environment, plan.environment.policy
    lines = [
        f"{environment.name}: {environment.mode} mode, {policy.strategy} + {policy.fallback}, "
        f"max_parallel={policy.max_parallel or 'all'}, max_failures={policy.max_failures}",
        "nodes:",
        *(f"  {name}  {address} {path}" for name, (address, path) in plan.nodes.items()),
        "batches:",
    ]
    for index, batch in enumerate(plan.batches, start=1):
        lines.append(f"  {index}: {', '.join(batch)}")
    return [*lines, "each node: " + " → ".join(plan.steps)]


class Progress:
    """Shows node states as events are stored: a live table on a terminal, lines otherwise;
    with -v each step with its timing on stderr instead; nothing with -q or --json."""

    def __init__(self, console: Console, output: Output, as_json: bool = False) -> None:
        self.console = console
        self.live: Live | None = None
        self.steps = StepLines(output) if output.verbose else None
        self.silent = output.quiet or as_json

    def __call__(self, deployment: Deployment, events: Sequence[Any]) -> None:
        if self.steps is not None:
            self.steps(events)
        if self.silent:
            return
        from edeliver.core.usecases.build_tasks import status_lines

        for domain_event in events:  # legacy hooks' `status` lines, as edeliver 1.x showed them
            if type(domain_event).__name__ == "TaskRan":
                for line in status_lines(domain_event.output):
                    self.console.print(line, highlight=False, markup=False)
        if self.steps is not None:  # the steps said it already, with their timings
            return
        if self.console.is_terminal:
            self._refresh(deployment)
            return
        for domain_event in events:
            if type(domain_event).__name__ in ("NodeTransitioned", "FallbackDecided"):
                self.console.print(
                    event_line(event_record(domain_event)), highlight=False, markup=False
                )

    def _refresh(self, deployment: Deployment) -> None:
        table = Table(title=f"{deployment.app} {deployment.release} → {deployment.environment}")
        table.add_column("node")
        table.add_column("state")
        for node, state in deployment.states.items():
            style = _STATE_STYLE.get(state, "cyan")
            table.add_row(node, f"[{style}]{state}[/]")
        if self.live is None:
            self.live = Live(table, console=self.console, refresh_per_second=8)
            self.live.start()
        self.live.update(table)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
