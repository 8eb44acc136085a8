"""The Deployment aggregate: one rollout of one version to one environment (DESIGN §3-§5).

Command methods validate against the lifecycle and the strategy, compute what changes
(`deployment_changes`) and record it in events; each event's apply body only assigns, because
it runs again on every replay. Events hold primitive fields only (strings, numbers, lists,
dicts), so every store transcodes them. Events of an earlier shape: `deployment_events`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import register_topic

from edeliver.core.domain import deployment_events, strategy
from edeliver.core.domain.deployment_changes import (
    CARRIED_BY,
    is_first_probe,
)
from edeliver.core.domain.deployment_reading import DeploymentReading
from edeliver.core.domain.errors import UsageError
from edeliver.core.domain.lifecycle import (
    PENDING,
    ROLLING_BACK,
    STEP_OF_STATE,
    UPDATED,
    NodeState,
    Trigger,
    next_state,
)
from edeliver.core.domain.model import Route
from edeliver.core.domain.rollout_states import (
    ENDED,
    INTERRUPTED,
    ROLLOUT,
    RUNNING,
    Outcome,
    RolloutTrigger,
)
from edeliver.core.domain.tasks import OUTPUT_LIMIT

REFUSED, ABANDONED = Outcome.REFUSED, Outcome.ABANDONED


class Deployment(DeploymentReading, Aggregate):
    """Every node's lifecycle, every failure and fallback decision, and the outcome."""

    @staticmethod
    def create_id(deployment_id: str, **_: Any) -> UUID:
        return UUID(deployment_id)

    @event("Started")
    def __init__(
        self,
        deployment_id: str,
        app: str,
        environment: str,
        version: str,
        mode: str,
        policy: dict[str, Any],
        order: list[str],
        batches: list[list[str]],
        started_by: str,
        started_at: str,
        selection: dict[str, list[str]] | None = None,
        subset: bool = False,
    ) -> None:
        self.app, self.environment, self.release, self.mode = app, environment, version, mode
        self.subset = subset  # --node / --label: some of the environment's nodes, not all
        self.selection = selection or {}
        self.policy_fields = policy
        self.order, self.batches = order, batches
        self.started_by, self.started_at = started_by, started_at
        self.states: dict[str, str] = dict.fromkeys(order, PENDING)
        self.previous: dict[str, str | None] = {}
        # Upgrade mode: each node's route (Route.as_dict), as its first step decided it.
        self.routes: dict[str, dict[str, object]] = {}
        self.pending_actions: dict[str, str] = {}
        self.undecided: list[str] = []
        self.reasons: dict[str, str] = {}
        self.failures = 0
        self.escalated = False
        self.rollout_state = RUNNING
        self.outcome: str | None = None
        self.ended_at: str | None = None
        self.end_reason = ""  # why it was refused or abandoned
        self.interruptions = 0
        self.deployer_left = False  # its deployer recorded that it stopped (Ctrl-C, an error)
        # (node, stage, task, outcome, critical), in the order they ended
        self.task_runs: list[tuple[str, str, str, str, bool]] = []
        # The last outcome of each task run, by (node, stage, task): asked before every run.
        self.task_outcomes: dict[tuple[str, str, str], str] = {}

    # ---- reading ----------------------------------------------------------------------------

    def may_have_a_live_deployer(self, now: datetime, quiet: timedelta) -> bool:
        """Unfinished, its deployer never said it stopped, and it wrote an event less than
        `quiet` ago: a deployer killed outright looks the same as one busy with a step, so only
        silence tells them apart. An event time ahead of our clock counts as recent."""
        if self.finished or self.deployer_left:
            return False
        return now - self.modified_on < quiet

    @property
    def short_id(self) -> str:
        return str(self.id)[:8]

    # ---- commands -----------------------------------------------------------------------------

    def probed(self, node: str, facts: Mapping[str, object]) -> None:
        """Record what a probe found; the first probe fixes the version to roll back to."""
        found = facts.get("current_version")
        current = found if isinstance(found, str) else None
        self._probed(node, dict(facts), current, is_first_probe(node, self.previous))

    def routed(self, node: str, route: Route) -> None:
        """Record the route a node takes and the release it would roll back to."""
        self._routed(
            node, route.hot, route.why, route.rollback_to, route.running, route.package_from
        )

    def transition(self, node: str, trigger: str, detail: str = "") -> str:
        """Fire a lifecycle trigger on a node and record it; returns the new state."""
        source = self.states[node]
        destination = next_state(source, trigger)
        changes = self.transition_changes(node, str(trigger), str(destination), detail)
        self._transitioned(node, str(trigger), source, str(destination), detail, *changes)
        return destination

    def fail(self, node: str, step: str, reason: str) -> None:
        """Record the failure of a node's step and, unless a decision already covers the node,
        decide the fallback (the failure event itself marks it as awaiting a decision)."""
        self.transition(node, Trigger.FAIL, f"{step}: {reason}")
        self.decide_pending()

    def decide_pending(self) -> None:
        """Decide the fallback for every failure recorded without a decision yet."""
        for node in list(self.undecided):
            decision = strategy.decide(
                self.policy, self.states, self.order, node, self.failures + 1
            )
            actions = {n: a for n, a in decision.actions.items() if a in CARRIED_BY}
            changes = self.decision_changes(decision.escalated, actions)
            self._decided(node, list(decision.scope), decision.escalated, actions, *changes)

    def step_ended(self, node: str, note: str = "") -> str:
        """Record that the node's current step succeeded (with the step's note, if it gave one);
        returns the node's new state."""
        trigger = _STEP_TRIGGERS[NodeState(self.states[node])]
        state = self.transition(node, trigger, note)
        if state == UPDATED and self.pending_actions.get(node) == strategy.HALT_AFTER_STEP:
            self._action_dropped(node)  # stop leaves updated nodes updated
        return state

    def carry_out_due_actions(self, busy: Collection[str] = ()) -> list[str]:
        """Record the due fallback transitions (skip, halt, rollback), except on nodes whose step
        is still running (`busy`); return the nodes now rolling back, for the caller to act on."""
        rollbacks: list[str] = []
        if not self.pending_actions:  # the usual case, checked at every step of every node
            return rollbacks
        for node in [n for n in self.order if n in self.pending_actions and n not in busy]:
            trigger = CARRIED_BY[self.pending_actions[node]]
            if self.transition(node, trigger) == ROLLING_BACK:
                rollbacks.append(node)
        return rollbacks

    def task_ran(
        self, node: str, stage: str, task: str, outcome: str, *, critical: bool, output: str = ""
    ) -> None:
        """Record how a task (or its cleanup) ended, with the tail of its output."""
        self._task_ran(node, stage, task, outcome, critical, output[-OUTPUT_LIMIT:])

    def task_started(self, node: str, stage: str, task: str, timeout: float | None) -> None:
        """Record that a task starts (its node, or "" for this machine): `edeliver log` shows
        it running, and the write shows its deployer alive however long the task takes."""
        self._task_started(node, stage, task, timeout)

    # ---- the rollout's own lifecycle (`rollout_states`): each command guarded by its table ----

    def finish(self, at: str) -> None:
        self.guard(RolloutTrigger.FINISH)
        self._finished(str(self.outcome_now()), at)

    def refuse(self, reason: str, at: str) -> None:
        self.guard(RolloutTrigger.REFUSE)
        self._finished(str(REFUSED), at, reason)

    def abandon(self, reason: str, by: str, at: str) -> None:
        self.check_abandoning(reason)
        self._abandoned(reason, by, at)

    def check_abandoning(self, reason: str) -> None:
        """UsageError unless it may be abandoned, with this reason."""
        require_reason(reason)
        self.guard(RolloutTrigger.ABANDON)

    def interrupt(self, reason: str) -> None:
        self.guard(RolloutTrigger.INTERRUPT)
        self._interrupted(reason)

    def resume(self, by: str) -> None:
        self.guard(RolloutTrigger.RESUME)
        self._resumed(by)

    def guard(self, trigger: RolloutTrigger) -> None:
        """UsageError for a deployment that ended; IllegalTransition for any other misuse."""
        if self.finished:
            raise UsageError(f"deployment {self.short_id} already ended ({self.outcome})")
        ROLLOUT.next_state(self.rollout_state, trigger)

    # ---- events: apply bodies only apply what the event says --------------------------------

    NodeProbed = deployment_events.NodeProbed

    @event(NodeProbed)
    def _probed(
        self, node: str, facts: dict[str, object], current_version: str | None, first: bool | None
    ) -> None:
        if first is None:  # stored by version 1 (NodeProbed.upcast_v1_v2)
            first = is_first_probe(node, self.previous)
        if first:
            self.previous[node] = current_version

    @event("NodeRouted")
    def _routed(
        self,
        node: str,
        hot: bool,
        why: str,
        rollback_to: str | None,
        running: str | None,
        package_from: str | None,
    ) -> None:
        self.routes[node] = Route(hot, why, rollback_to, running, package_from).as_dict()

    NodeTransitioned = deployment_events.NodeTransitioned

    @event(NodeTransitioned)
    def _transitioned(
        self, node: str, trigger: str, src: str, dest: str, detail: str, reason: str | None,
        awaits_decision: bool | None, clears_pending: bool | None,
    ) -> None:  # fmt: skip
        if awaits_decision is None or clears_pending is None:  # version 1 (upcast_v1_v2)
            reason, awaits_decision, clears_pending = self.transition_changes(
                node, trigger, dest, detail
            )
        self.states[node] = dest
        if reason is not None:
            self.reasons[node] = reason
        if awaits_decision:
            self.undecided.append(node)
        if clears_pending:
            self.pending_actions.pop(node, None)

    FallbackDecided = deployment_events.FallbackDecided

    @event(FallbackDecided)
    def _decided(
        self, failed_node: str, scope: list[str], escalated: bool, actions: dict[str, str],
        failures: int | None, any_escalated: bool | None, added: dict[str, str] | None,
    ) -> None:  # fmt: skip
        if failures is None or any_escalated is None or added is None:  # version 1 (upcast)
            failures, any_escalated, added = self.decision_changes(escalated, actions)
        self.undecided.remove(failed_node)
        self.failures, self.escalated = failures, any_escalated
        self.pending_actions.update(added)

    @event("PendingActionDropped")
    def _action_dropped(self, node: str) -> None:
        self.pending_actions.pop(node, None)

    @event("TaskRan")
    def _task_ran(
        self, node: str, stage: str, task: str, outcome: str, critical: bool, output: str
    ) -> None:
        self.task_runs.append((node, stage, task, outcome, critical))
        self.task_outcomes[(node, stage, task)] = outcome

    @event("TaskStarted")
    def _task_started(self, node: str, stage: str, task: str, timeout: float | None) -> None:
        """Nothing to assign: how the task ended is its TaskRan; a start alone is a run cut
        short, which runs again on resume."""

    @event("Finished")
    def _finished(self, outcome: str, at: str, reason: str = "") -> None:
        self.rollout_state, self.outcome = ENDED, outcome
        self.ended_at, self.end_reason = at, reason

    @event("Abandoned")
    def _abandoned(self, reason: str, by: str, at: str) -> None:
        self.rollout_state, self.outcome, self.ended_at = ENDED, ABANDONED, at
        self.end_reason = f"abandoned by {by}: {reason}"

    @event("Interrupted")
    def _interrupted(self, reason: str) -> None:
        self.rollout_state, self.deployer_left = INTERRUPTED, True
        self.interruptions += 1

    @event("Resumed")
    def _resumed(self, by: str) -> None:
        self.rollout_state, self.deployer_left = RUNNING, False


_STEP_TRIGGERS = {state: trigger for state, (_, trigger) in STEP_OF_STATE.items()}


def require_reason(reason: str) -> None:
    """Abandoning needs a reason, for the history."""
    if not reason.strip():
        raise UsageError("abandoning needs a reason, for the history")


# Events stored before this module moved to core/domain/ name the old one: they still replay.
register_topic("edeliver.core.deployment:Deployment", Deployment)
