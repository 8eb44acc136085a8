"""What the Deployment's probe, transition and decision events change, computed from the state
before the event (DESIGN §3-§5).

The aggregate's command computes these changes and records them in the event, so the event's
apply body only applies them: each names one node's change (never a copy of a whole
collection, so an event's size does not grow with the number of nodes). An event stored before
the changes were recorded (version 1) is replayed by the same functions, on the same state:
events replay in order.

A node's pending fallback action is recorded with the decision and cleared by the transition
that carries it out, so an interruption between deciding and acting loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    awaits_decision: bool  # the node joins the failures awaiting a fallback decision
    clears_pending: bool  # the node's pending fallback action is carried out


class DecisionChanges(NamedTuple):
    failures: int  # failures decided so far, this one included
    any_escalated: bool  # whether any decision escalated, this one included
    added: dict[str, str]  # node -> the action now pending (where none was already)


def transition_changes(
    node: str, trigger: str, dest: str, detail: str, *, reason: str | None,
    pending_actions: Mapping[str, str],
) -> TransitionChanges:  # fmt: skip
    """A failure gives its node its reason and, unless a pending action covers the node already,
    awaits a decision: in the same event, so no interruption separates the two. A failed
    rollback says so first and then why the node was rolled back (`reason`: the one before)."""
    new_reason = None
    if trigger == Trigger.FAIL:
        new_reason = detail
    if trigger == Trigger.ROLLBACK_FAILED:
        new_reason = f"rollback failed: {detail}" + (f"; before: {reason}" if reason else "")
    awaits = trigger == Trigger.FAIL and node not in pending_actions
    return TransitionChanges(new_reason, awaits, dest in CARRIED_OUT_IN)


def decision_changes(
    escalated: bool, actions: Mapping[str, str], *, failures: int, escalated_before: bool,
    pending_actions: Mapping[str, str],
) -> DecisionChanges:  # fmt: skip
    """A decision counts its failure and adds its actions, where no action is pending already."""
    added = {n: a for n, a in actions.items() if n not in pending_actions}
    return DecisionChanges(failures + 1, escalated_before or escalated, added)


def is_first_probe(node: str, previous: Mapping[str, str | None]) -> bool:
    """Each node's release before the deployment: its first probe fixes it."""
    return node not in previous
