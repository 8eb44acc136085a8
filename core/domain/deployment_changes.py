"""What the Deployment's probe, transition and decision events change, computed from the state
before the event (DESIGN §3-§5).

The aggregate's command computes these values and records them in the event, so the event's
apply body only assigns them. An event stored before the values were recorded (version 1) is
replayed by the same functions, on the same state: events replay in order.

A node's pending fallback action is recorded with the decision and cleared by the transition
that carries it out, so an interruption between deciding and acting loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from edeliver.core.domain import strategy
from edeliver.core.domain.lifecycle import HALTED, ROLLING_BACK, SKIPPED, Trigger

CARRIED_BY = {  # the trigger that carries out each pending action
    strategy.SKIP: Trigger.SKIP,
    strategy.ROLLBACK: Trigger.ROLLBACK,
    strategy.ROLLBACK_AFTER_STEP: Trigger.ROLLBACK,
    strategy.HALT: Trigger.HALT,
    strategy.HALT_AFTER_STEP: Trigger.HALT,
}
# Reaching one of these states is carrying out the node's pending action.
CARRIED_OUT_IN = (SKIPPED, HALTED, ROLLING_BACK)


class TransitionChanges(NamedTuple):
    reason: str | None  # the node's new reason; None: it keeps the one it has, if any
    undecided: list[str]  # failures awaiting a fallback decision
    pending_actions: dict[str, str]  # node -> fallback action not carried out yet


class DecisionChanges(NamedTuple):
    failures: int  # failures decided so far
    any_escalated: bool  # whether any decision escalated
    undecided: list[str]
    pending_actions: dict[str, str]


def transition_changes(
    node: str, trigger: str, dest: str, detail: str, *, reason: str | None,
    undecided: Sequence[str], pending_actions: Mapping[str, str],
) -> TransitionChanges:  # fmt: skip
    """A failure gives its node its reason and, unless a pending action covers the node already,
    awaits a decision: in the same event, so no interruption separates the two. A failed
    rollback says so first and then why the node was rolled back (`reason`: the one before)."""
    new_reason, awaiting = None, list(undecided)
    if trigger == Trigger.FAIL:
        new_reason = detail
        if node not in pending_actions:
            awaiting.append(node)
    if trigger == Trigger.ROLLBACK_FAILED:
        new_reason = f"rollback failed: {detail}" + (f"; before: {reason}" if reason else "")
    carried_out = dest in CARRIED_OUT_IN
    pending = {n: a for n, a in pending_actions.items() if not (carried_out and n == node)}
    return TransitionChanges(new_reason, awaiting, pending)


def decision_changes(
    failed_node: str, escalated: bool, actions: Mapping[str, str], *, failures: int,
    escalated_before: bool, undecided: Sequence[str], pending_actions: Mapping[str, str],
) -> DecisionChanges:  # fmt: skip
    """A decision settles its failure and adds its actions, where no action is pending already."""
    awaiting = list(undecided)
    awaiting.remove(failed_node)
    added = {n: a for n, a in actions.items() if n not in pending_actions}
    return DecisionChanges(
        failures + 1, escalated_before or escalated, awaiting, {**pending_actions, **added}
    )


def previous_after_probe(
    node: str, current_version: str | None, previous: Mapping[str, str | None]
) -> dict[str, str | None]:
    """Each node's release before the deployment: its first probe fixes it."""
    return dict(previous) if node in previous else {**previous, node: current_version}
