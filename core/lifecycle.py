"""The node lifecycle of DESIGN §3: one state machine per node per deployment.

The lifecycle is data, a transition table, checked by a model-less `transitions.Machine`. The
Machine only answers "is this trigger legal from this state, and where does it lead"; the
Deployment aggregate records the answer as an event, so replaying history never needs the
Machine and never reruns a callback.
"""

from __future__ import annotations

from typing import Final

from transitions import Machine

from edeliver.core.errors import EdeliverError

PENDING, PREPARING, INSTALLING, ACTIVATING, VERIFYING = (
    "pending",
    "preparing",
    "installing",
    "activating",
    "verifying",
)
UPDATED, SKIPPED, FAILED, HALTED = "updated", "skipped", "failed", "halted"
ROLLING_BACK, ROLLED_BACK, ROLLBACK_FAILED = "rolling_back", "rolled_back", "rollback_failed"

IN_FLIGHT: Final = (PREPARING, INSTALLING, ACTIVATING, VERIFYING)
STATES: Final = (
    PENDING,
    *IN_FLIGHT,
    UPDATED,
    SKIPPED,
    FAILED,
    HALTED,
    ROLLING_BACK,
    ROLLED_BACK,
    ROLLBACK_FAILED,
)
# States a node leaves only by a fallback decision, or never.
SETTLED: Final = frozenset({UPDATED, SKIPPED, FAILED, HALTED, ROLLED_BACK, ROLLBACK_FAILED})

# (trigger, sources, destination)
TRANSITIONS: Final = (
    ("start", (PENDING,), PREPARING),
    ("prepared", (PREPARING,), INSTALLING),
    ("installed", (INSTALLING,), ACTIVATING),
    ("activated", (ACTIVATING,), VERIFYING),
    ("verified", (VERIFYING,), UPDATED),
    ("skip", (PENDING,), SKIPPED),
    ("fail", IN_FLIGHT, FAILED),
    ("rollback", (*IN_FLIGHT, FAILED, UPDATED), ROLLING_BACK),
    ("rolled_back", (ROLLING_BACK,), ROLLED_BACK),
    ("rollback_failed", (ROLLING_BACK,), ROLLBACK_FAILED),
    ("halt", (*IN_FLIGHT, FAILED), HALTED),
)

# The work done while a node is in each in-flight state, and the trigger that ends it.
STEP_OF_STATE: Final = {
    PREPARING: ("prepare", "prepared"),
    INSTALLING: ("install", "installed"),
    ACTIVATING: ("activate", "activated"),
    VERIFYING: ("verify", "verified"),
}

_RULES: Final = Machine(
    model=None,
    states=list(STATES),
    transitions=[{"trigger": t, "source": list(src), "dest": dest} for t, src, dest in TRANSITIONS],
    initial=PENDING,
    auto_transitions=False,
)


class IllegalTransition(EdeliverError):
    """A trigger was fired from a state that does not allow it: a bug, never user input."""


def next_state(state: str, trigger: str) -> str:
    """Where `trigger` leads from `state`, or IllegalTransition."""
    found = _RULES.get_transitions(trigger=trigger, source=state)
    if not found:
        raise IllegalTransition(f"{trigger!r} is not allowed from {state!r}")
    return str(found[0].dest)


def triggers_from(state: str) -> frozenset[str]:
    """Every trigger legal from `state`."""
    return frozenset(t for t, sources, _ in TRANSITIONS if state in sources)
