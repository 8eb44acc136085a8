"""The node lifecycle of DESIGN §3: one state machine per node per deployment.

The lifecycle is data, a transition table, checked by a model-less `transitions.Machine`. The
Machine only answers "is this trigger legal from this state, and where does it lead"; the
Deployment aggregate records the answer as an event, so replaying history never needs the
Machine and never reruns a callback. States, triggers and steps are StrEnums whose values are
the strings stored in events, so every stored event reads the same as before they were enums.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final

from transitions import Machine

from edeliver.core.domain.errors import EdeliverError


class NodeState(StrEnum):
    PENDING = "pending"
    PREPARING = "preparing"
    INSTALLING = "installing"
    ACTIVATING = "activating"
    VERIFYING = "verifying"
    UPDATED = "updated"
    SKIPPED = "skipped"
    FAILED = "failed"
    HALTED = "halted"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"


class Trigger(StrEnum):
    START = "start"
    PREPARED = "prepared"
    INSTALLED = "installed"
    ACTIVATED = "activated"
    VERIFIED = "verified"
    SKIP = "skip"
    FAIL = "fail"
    ROLLBACK = "rollback"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    HALT = "halt"


class Step(StrEnum):
    """The work a node does in each in-flight state: a NodeShell method of the same name."""

    PREPARE = "prepare"
    INSTALL = "install"
    ACTIVATE = "activate"
    VERIFY = "verify"


PENDING, PREPARING, INSTALLING = NodeState.PENDING, NodeState.PREPARING, NodeState.INSTALLING
ACTIVATING, VERIFYING, UPDATED = NodeState.ACTIVATING, NodeState.VERIFYING, NodeState.UPDATED
SKIPPED, FAILED, HALTED = NodeState.SKIPPED, NodeState.FAILED, NodeState.HALTED
ROLLING_BACK, ROLLED_BACK = NodeState.ROLLING_BACK, NodeState.ROLLED_BACK
ROLLBACK_FAILED = NodeState.ROLLBACK_FAILED

IN_FLIGHT: Final = (PREPARING, INSTALLING, ACTIVATING, VERIFYING)
STATES: Final = tuple(NodeState)

# (trigger, sources, destination)
TRANSITIONS: Final = (
    (Trigger.START, (PENDING,), PREPARING),
    (Trigger.PREPARED, (PREPARING,), INSTALLING),
    (Trigger.INSTALLED, (INSTALLING,), ACTIVATING),
    (Trigger.ACTIVATED, (ACTIVATING,), VERIFYING),
    (Trigger.VERIFIED, (VERIFYING,), UPDATED),
    (Trigger.SKIP, (PENDING,), SKIPPED),
    (Trigger.FAIL, IN_FLIGHT, FAILED),
    (Trigger.ROLLBACK, (*IN_FLIGHT, FAILED, UPDATED), ROLLING_BACK),
    (Trigger.ROLLED_BACK, (ROLLING_BACK,), ROLLED_BACK),
    (Trigger.ROLLBACK_FAILED, (ROLLING_BACK,), ROLLBACK_FAILED),
    (Trigger.HALT, (*IN_FLIGHT, FAILED), HALTED),
)

# The work done while a node is in each in-flight state, and the trigger that ends it.
STEP_OF_STATE: Final = {
    PREPARING: (Step.PREPARE, Trigger.PREPARED),
    INSTALLING: (Step.INSTALL, Trigger.INSTALLED),
    ACTIVATING: (Step.ACTIVATE, Trigger.ACTIVATED),
    VERIFYING: (Step.VERIFY, Trigger.VERIFIED),
}


class IllegalTransition(EdeliverError):
    """A trigger was fired from a state that does not allow it: a bug, never user input."""


class TransitionTable:
    """A lifecycle as data: (trigger, sources, destination) rows checked by a model-less
    `transitions.Machine`, which answers where a trigger leads and never holds the state."""

    def __init__(
        self, states: Iterable[str], initial: str, rows: Iterable[tuple[str, Iterable[str], str]]
    ) -> None:
        self.rows = tuple((str(t), tuple(map(str, src)), str(dest)) for t, src, dest in rows)
        self._machine = Machine(
            model=None,
            states=[str(s) for s in states],
            transitions=[
                {"trigger": t, "source": list(src), "dest": dest} for t, src, dest in self.rows
            ],
            initial=str(initial),
            auto_transitions=False,
        )

    def next_state(self, state: str, trigger: str) -> str:
        """Where `trigger` leads from `state`, or IllegalTransition."""
        found = self._machine.get_transitions(trigger=str(trigger), source=str(state))
        if not found:
            raise IllegalTransition(f"{str(trigger)!r} is not allowed from {str(state)!r}")
        return str(found[0].dest)

    def triggers_from(self, state: str) -> frozenset[str]:
        """Every trigger legal from `state`."""
        return frozenset(t for t, sources, _ in self.rows if state in sources)


_RULES: Final = TransitionTable(STATES, PENDING, TRANSITIONS)


def next_state(state: str, trigger: str) -> NodeState:
    """Where `trigger` leads a node from `state`, or IllegalTransition."""
    return NodeState(_RULES.next_state(state, trigger))


def triggers_from(state: str) -> frozenset[str]:
    """Every trigger legal from `state`."""
    return _RULES.triggers_from(state)
