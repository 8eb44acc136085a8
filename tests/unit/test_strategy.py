"""The DESIGN §3 lifecycle and the §4 strategy × fallback matrix, as tables."""

from __future__ import annotations

import pytest

from edeliver.core.domain.config import Policy
from edeliver.core.domain.lifecycle import IllegalTransition, next_state, triggers_from
from edeliver.core.domain.strategy import (
    CONTINUE,
    HALT,
    HALT_AFTER_STEP,
    LEAVE,
    ROLLBACK,
    ROLLBACK_AFTER_STEP,
    SKIP,
    batches,
    decide,
    scope,
)

LEGAL = [
    ("pending", "start", "preparing"),
    ("preparing", "prepared", "installing"),
    ("installing", "installed", "activating"),
    ("activating", "activated", "verifying"),
    ("verifying", "verified", "updated"),
    ("pending", "skip", "skipped"),
    ("installing", "fail", "failed"),
    ("updated", "rollback", "rolling_back"),
    ("failed", "rollback", "rolling_back"),
    ("activating", "rollback", "rolling_back"),
    ("rolling_back", "rolled_back", "rolled_back"),
    ("rolling_back", "rollback_failed", "rollback_failed"),
    ("verifying", "halt", "halted"),
    ("failed", "halt", "halted"),
]
ILLEGAL = [
    ("pending", "verified"),
    ("updated", "fail"),
    ("pending", "rollback"),
    ("skipped", "start"),
    ("rolled_back", "rollback"),
    ("rollback_failed", "rollback"),
    ("updated", "halt"),
    ("halted", "start"),
    ("failed", "verified"),
]


@pytest.mark.parametrize(("source", "trigger", "destination"), LEGAL)
def test_legal_transitions_lead_where_the_design_says(
    source: str, trigger: str, destination: str
) -> None:
    assert next_state(source, trigger) == destination


@pytest.mark.parametrize(("source", "trigger"), ILLEGAL)
def test_illegal_transitions_are_refused(source: str, trigger: str) -> None:
    """A trigger not allowed from a state raises instead of corrupting the lifecycle."""
    with pytest.raises(IllegalTransition):
        next_state(source, trigger)


def test_a_failed_rollback_never_loops() -> None:
    """rollback_failed is terminal: no trigger leaves it."""
    assert triggers_from("rollback_failed") == frozenset()
    assert triggers_from("rolled_back") == frozenset()


ORDER = ["a", "b", "c", "d", "e"]
# a updated, b in flight, c failed (F), d in flight, e pending
STATES = {"a": "updated", "b": "installing", "c": "failed", "d": "activating", "e": "pending"}


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("one_for_one", ("c",)),
        ("rest_for_one", ("b", "c", "d", "e")),
        ("one_for_all", ("a", "b", "c", "d", "e")),
    ],
)
def test_scope_by_strategy(strategy: str, expected: tuple[str, ...]) -> None:
    """The strategy picks which nodes a failure concerns (DESIGN §4, first table)."""
    assert scope(strategy, STATES, ORDER, "c") == expected


MATRIX = {  # fallback -> the action for a (updated), b (in flight), c (F), e (pending)
    "rollback": {"a": ROLLBACK, "b": ROLLBACK_AFTER_STEP, "c": ROLLBACK, "e": SKIP},
    "stop": {"a": LEAVE, "b": HALT_AFTER_STEP, "c": HALT, "e": SKIP},
    "ignore": {"a": LEAVE, "b": CONTINUE, "c": LEAVE, "e": CONTINUE},
}


@pytest.mark.parametrize("fallback", ["rollback", "stop", "ignore"])
def test_fallback_by_node_state(fallback: str) -> None:
    """The fallback picks what happens to each node in scope by its state (second table)."""
    decision = decide(Policy("one_for_all", fallback), STATES, ORDER, "c", failures=1)  # type: ignore[arg-type]
    expected = MATRIX[fallback]
    assert {n: decision.actions[n] for n in expected} == expected
    assert decision.actions["d"] == expected["b"]  # in flight like b
    assert not decision.escalated


@pytest.mark.parametrize(
    ("strategy", "max_failures", "failures", "escalated"),
    [
        ("one_for_one", None, 9, False),
        ("one_for_one", 0, 1, True),
        ("one_for_one", 2, 2, False),
        ("one_for_one", 2, 3, True),
        ("rest_for_one", 1, 2, True),
        ("one_for_all", 0, 5, False),
    ],
)
def test_escalation_after_max_failures(
    strategy: str, max_failures: int | None, failures: int, escalated: bool
) -> None:
    """The (max_failures + 1)-th failure escalates one_for_one / rest_for_one to one_for_all."""
    policy = Policy(strategy, "rollback", max_failures=max_failures)  # type: ignore[arg-type]
    decision = decide(policy, STATES, ORDER, "c", failures)
    assert decision.escalated is escalated
    assert (decision.scope == tuple(ORDER)) is (escalated or strategy == "one_for_all")


def test_batches_follow_node_order_and_max_parallel() -> None:
    assert batches(ORDER, 2) == (("a", "b"), ("c", "d"), ("e",))
    assert batches(ORDER, None) == (tuple(ORDER),)
    assert batches(ORDER, 10) == (tuple(ORDER),)
