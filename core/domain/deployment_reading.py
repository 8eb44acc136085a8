"""What a Deployment answers about itself: its policy, its nodes by state, the releases its
nodes roll back to, how its tasks ran, its outcome, and what a transition or a decision would
change. Read from the attributes its events assign (declared here), apart from the commands and
events of `deployment.py`.
"""

from __future__ import annotations

from typing import Any

from edeliver.core.domain import strategy
from edeliver.core.domain.config import Policy
from edeliver.core.domain.deployment_changes import (
    DecisionChanges,
    TransitionChanges,
    decision_changes,
    transition_changes,
)
from edeliver.core.domain.lifecycle import UPDATED
from edeliver.core.domain.model import Route
from edeliver.core.domain.rollout_states import ENDED, Outcome, TaskOutcome
from edeliver.core.domain.tasks import AFTER_ROLLOUT

SUCCEEDED, FAILED_OUTCOME = Outcome.SUCCEEDED, Outcome.FAILED
TASK_OK, TASK_FAILED = TaskOutcome.OK, TaskOutcome.FAILED
CLEANED, CLEANUP_FAILED = TaskOutcome.CLEANED, TaskOutcome.CLEANUP_FAILED
CLEANUP_OUTCOMES = (CLEANED, CLEANUP_FAILED)


class DeploymentReading:
    """The Deployment's queries; `Deployment.__init__` says what each attribute holds."""

    policy_fields: dict[str, Any]
    order: list[str]
    states: dict[str, str]
    previous: dict[str, str | None]
    routes: dict[str, dict[str, object]]
    rollout_state: str
    task_runs: list[tuple[str, str, str, str, bool]]
    task_outcomes: dict[tuple[str, str, str], str]
    reasons: dict[str, str]
    undecided: list[str]
    pending_actions: dict[str, str]
    failures: int
    escalated: bool

    @property
    def policy(self) -> Policy:
        return strategy.policy_of(self.policy_fields)

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

    def outcome_now(self) -> Outcome:
        """The outcome if it finished now: succeeded when every node is updated and no critical
        task failed after."""
        updated = all(s == UPDATED for s in self.states.values())
        return SUCCEEDED if updated and not self.tasks_failed_after else FAILED_OUTCOME

    def transition_changes(
        self, node: str, trigger: str, dest: str, detail: str
    ) -> TransitionChanges:
        """What firing the trigger would change, recorded in its event."""
        return transition_changes(
            node, trigger, dest, detail, reason=self.reasons.get(node),
            pending_actions=self.pending_actions,
        )  # fmt: skip

    def decision_changes(self, escalated: bool, actions: dict[str, str]) -> DecisionChanges:
        """What recording the decision would change, recorded in its event."""
        return decision_changes(
            escalated, actions, failures=self.failures, escalated_before=self.escalated,
            pending_actions=self.pending_actions,
        )  # fmt: skip
