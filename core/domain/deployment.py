"""The Deployment aggregate: one rollout of one version to one environment (DESIGN §3-§5).

Command methods validate against the lifecycle and the strategy, then record events; each
event's apply body only assigns, because it runs again on every replay. Events hold primitive
fields only (strings, numbers, lists, dicts), so every store transcodes them.

A node's pending fallback action (`pending_actions`) is recorded with the decision and cleared by
the transition that carries it out. So an interruption between deciding and acting loses
nothing: `resume` finds the action still pending and carries it out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import register_topic

from edeliver.core.domain import strategy
from edeliver.core.domain.config import Policy
from edeliver.core.domain.errors import UsageError
from edeliver.core.domain.lifecycle import (
    HALTED,
    PENDING,
    ROLLING_BACK,
    SKIPPED,
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
    TaskOutcome,
)
from edeliver.core.domain.tasks import AFTER_ROLLOUT, OUTPUT_LIMIT

SUCCEEDED, FAILED_OUTCOME = Outcome.SUCCEEDED, Outcome.FAILED
REFUSED, ABANDONED = Outcome.REFUSED, Outcome.ABANDONED
TASK_OK, TASK_FAILED = TaskOutcome.OK, TaskOutcome.FAILED
CLEANED, CLEANUP_FAILED = TaskOutcome.CLEANED, TaskOutcome.CLEANUP_FAILED
CLEANUP_OUTCOMES = (CLEANED, CLEANUP_FAILED)
_CARRIED_BY = {  # the trigger that carries out each pending action
    strategy.SKIP: Trigger.SKIP,
    strategy.ROLLBACK: Trigger.ROLLBACK,
    strategy.ROLLBACK_AFTER_STEP: Trigger.ROLLBACK,
    strategy.HALT: Trigger.HALT,
    strategy.HALT_AFTER_STEP: Trigger.HALT,
}


class Deployment(Aggregate):
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
    def policy(self) -> Policy:
        return strategy.policy_of(self.policy_fields)

    @property
    def short_id(self) -> str:
        return str(self.id)[:8]

    @property
    def finished(self) -> bool:
        return self.rollout_state == ENDED

    def nodes_in(self, *states: str) -> list[str]:
        return [n for n in self.order if self.states[n] in states]

    def task_outcome(self, node: str, stage: str, task: str) -> str | None:
        """How the task last ended there in this deployment, or None if it never ran there."""
        return self.task_outcomes.get((node, stage, task))

    def once_outcome(self, task: str) -> tuple[str, str] | None:
        """For a once-per-deployment task: the node it ran for and how it ended, if it ran."""
        ran = [
            (n, o) for n, _, t, o, _ in self.task_runs if t == task and o in (TASK_OK, TASK_FAILED)
        ]
        return ran[-1] if ran else None

    def cleanups_due(self, node: str) -> list[str]:
        """Tasks that ran on the node and are not cleaned up yet, the last one first."""
        cleaned = {t for n, _, t, o, _ in self.task_runs if n == node and o in CLEANUP_OUTCOMES}
        ran = [t for n, _, t, o, _ in self.task_runs if n == node and o == TASK_OK]
        return [t for t in reversed(ran) if t not in cleaned]

    @property
    def tasks_failed_after(self) -> bool:
        """A critical task failed after every node was updated: the deployment did not succeed."""
        return any(
            stage in AFTER_ROLLOUT and outcome == TASK_FAILED and critical
            for _, stage, _, outcome, critical in self.task_runs
        )

    def route_of(self, node: str) -> Route | None:
        """The route the node took (upgrade mode), as recorded when it was decided."""
        fields = self.routes.get(node)
        return Route.from_dict(fields) if fields is not None else None

    def rollback_target(self, node: str) -> str | None:
        """The release a rollback returns the node to: the one it reported with its route,
        else the one its first probe found `current` on."""
        route = self.route_of(node)
        return route.rollback_to if route is not None else self.previous.get(node)

    # ---- commands -----------------------------------------------------------------------------

    def probed(self, node: str, facts: Mapping[str, object]) -> None:
        """Record what a probe found; the first probe fixes the version to roll back to."""
        current = facts.get("current_version")
        self._probed(node, dict(facts), current if isinstance(current, str) else None)

    def routed(self, node: str, route: Route) -> None:
        """Record the route a node takes and the release it would roll back to."""
        self._routed(
            node, route.hot, route.why, route.rollback_to, route.running, route.package_from
        )

    def transition(self, node: str, trigger: str, detail: str = "") -> str:
        """Fire a lifecycle trigger on a node and record it; returns the new state."""
        source = self.states[node]
        destination = next_state(source, trigger)
        self._transitioned(node, str(trigger), source, str(destination), detail)
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
            actions = {n: a for n, a in decision.actions.items() if a in _CARRIED_BY}
            self._decided(node, list(decision.scope), decision.escalated, actions)

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
            trigger = _CARRIED_BY[self.pending_actions[node]]
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
        self._finished(str(self._outcome()), at)

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

    def _outcome(self) -> Outcome:
        updated = all(s == UPDATED for s in self.states.values())
        return SUCCEEDED if updated and not self.tasks_failed_after else FAILED_OUTCOME

    # ---- events: apply bodies only assign ----------------------------------------------------

    @event("NodeProbed")
    def _probed(self, node: str, facts: dict[str, object], current_version: str | None) -> None:
        self.previous.setdefault(node, current_version)

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

    @event("NodeTransitioned")
    def _transitioned(self, node: str, trigger: str, src: str, dest: str, detail: str) -> None:
        self.states[node] = dest
        if trigger == Trigger.FAIL:
            self.reasons[node] = detail
            # In the same event, so no interruption can separate a failure from its decision.
            if node not in self.pending_actions:
                self.undecided.append(node)
        if trigger == "rollback_failed":  # the loud part first; why the node was rolled back after
            before = self.reasons.get(node)
            self.reasons[node] = f"rollback failed: {detail}" + (
                f"; before: {before}" if before else ""
            )
        if dest in (SKIPPED, HALTED, ROLLING_BACK):
            self.pending_actions.pop(node, None)

    @event("FallbackDecided")
    def _decided(
        self, failed_node: str, scope: list[str], escalated: bool, actions: dict[str, str]
    ) -> None:
        self.undecided.remove(failed_node)
        self.failures += 1
        self.escalated = self.escalated or escalated
        for node, action in actions.items():
            self.pending_actions.setdefault(node, action)

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
        self.rollout_state, self.outcome, self.ended_at, self.end_reason = (
            ENDED,
            outcome,
            at,
            reason,
        )

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
