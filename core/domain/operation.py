"""An Operation (DESIGN §5): one day-2 action (start, stop, restart, migrate) on some nodes of
one environment, as events: who did what to which nodes, how each node answered, how it ended.
Running one is a use case (`core/usecases/operations.py`); this is only its record."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import register_topic

START, STOP, RESTART, MIGRATE = "start", "stop", "restart", "migrate"
NODE_OK, NODE_FAILED, NODE_SKIPPED, NODE_INTERRUPTED = "ok", "failed", "skipped", "interrupted"
SUCCEEDED, FAILED, REFUSED, INTERRUPTED, ABANDONED = (
    "succeeded", "failed", "refused", "interrupted", "abandoned",
)  # fmt: skip


class Operation(Aggregate):
    """One operation on some nodes of one environment: each node's outcome, then the whole's."""

    @staticmethod
    def create_id(operation_id: str, **_: Any) -> UUID:
        return UUID(operation_id)

    @event("Started")
    def __init__(
        self,
        operation_id: str,
        app: str,
        environment: str,
        action: str,
        nodes: list[str],
        batches: list[list[str]],
        subset: bool,
        started_by: str,
        started_at: str,
    ) -> None:
        self.app, self.environment, self.action = app, environment, action
        self.nodes, self.batches, self.subset = nodes, batches, subset
        self.started_by, self.started_at = started_by, started_at
        self.outcomes: dict[str, str] = {}
        self.details: dict[str, str] = {}
        self.outcome: str | None = None
        self.ended_at: str | None = None

    @property
    def short_id(self) -> str:
        return str(self.id)[:8]

    @property
    def failed_nodes(self) -> list[str]:
        return [n for n, outcome in self.outcomes.items() if outcome == NODE_FAILED]

    def node_done(self, node: str, outcome: str, detail: str) -> None:
        self._node_done(node, outcome, detail)

    def finish(self, outcome: str, at: str, reason: str = "") -> None:
        # Not reached: after a failure, skipped; when cut short, perhaps in the middle of it.
        unreached = NODE_INTERRUPTED if outcome in (INTERRUPTED, ABANDONED) else NODE_SKIPPED
        for node in self.nodes:
            if node not in self.outcomes:
                self._node_done(node, unreached, "")
        self._finished(outcome, at, reason)

    @event("NodeOperated")
    def _node_done(self, node: str, outcome: str, detail: str) -> None:
        self.outcomes[node], self.details[node] = outcome, detail

    @event("Finished")
    def _finished(self, outcome: str, at: str, reason: str) -> None:
        self.outcome, self.ended_at = outcome, at


# Events stored before this class moved here name the module it had: they still replay.
register_topic("edeliver.core.operations:Operation", Operation)
