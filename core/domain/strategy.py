"""Supervisor strategies and fallbacks as pure functions (DESIGN §4).

`decide` maps (node states, the failed node, the policy, how many nodes failed so far) to one
action per node. The strategy picks the scope; the fallback picks, by each node's state, what
happens to it. Nothing here performs an action: the orchestrator does, after the Deployment has
recorded the decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from edeliver.core.domain.config import FALLBACKS, STRATEGIES, Policy
from edeliver.core.domain.lifecycle import FAILED, IN_FLIGHT, PENDING, UPDATED

# What happens to one node after a failure.
SKIP: Final = "skip"  # pending: never touched
ROLLBACK: Final = "rollback"  # now
ROLLBACK_AFTER_STEP: Final = "rollback_after_step"  # in flight: the current step ends first
HALT: Final = "halt"  # now, as it is
HALT_AFTER_STEP: Final = "halt_after_step"
CONTINUE: Final = "continue"  # ignore: goes on as if nothing happened
LEAVE: Final = "leave"  # nothing to do for this node

# fallback -> state class -> action
_ACTIONS: Final[Mapping[str, Mapping[str, str]]] = {
    "rollback": {
        PENDING: SKIP,
        "in_flight": ROLLBACK_AFTER_STEP,
        UPDATED: ROLLBACK,
        FAILED: ROLLBACK,
    },
    "stop": {PENDING: SKIP, "in_flight": HALT_AFTER_STEP, UPDATED: LEAVE, FAILED: HALT},
    "ignore": {PENDING: CONTINUE, "in_flight": CONTINUE, UPDATED: LEAVE, FAILED: LEAVE},
}


@dataclass(frozen=True)
class Decision:
    """What a failure of `failed_node` leads to."""

    failed_node: str
    scope: tuple[str, ...]
    escalated: bool
    actions: Mapping[str, str]


def escalates(policy: Policy, failures: int) -> bool:
    """Supervisor intensity: the (max_failures + 1)-th failed node escalates to one_for_all."""
    return (
        policy.strategy != "one_for_all"
        and policy.max_failures is not None
        and failures > policy.max_failures
    )


def scope(
    strategy: str, states: Mapping[str, str], order: Sequence[str], failed: str
) -> tuple[str, ...]:
    """The nodes a failure of `failed` concerns, in the environment's node order."""
    if strategy == "one_for_one":
        return (failed,)
    if strategy == "rest_for_one":
        return tuple(
            n for n in order if n == failed or states[n] == PENDING or states[n] in IN_FLIGHT
        )
    return tuple(order)


def action_for(fallback: str, state: str) -> str:
    """What the fallback does to one node in scope, by the node's state."""
    state_class = "in_flight" if state in IN_FLIGHT else state
    return _ACTIONS[fallback].get(state_class, LEAVE)


def decide(
    policy: Policy, states: Mapping[str, str], order: Sequence[str], failed: str, failures: int
) -> Decision:
    """Decide the fallback for the failure of `failed`, the `failures`-th counted failure."""
    escalated = escalates(policy, failures)
    strategy = "one_for_all" if escalated else policy.strategy
    in_scope = scope(strategy, states, order, failed)
    actions = {node: action_for(policy.fallback, states[node]) for node in in_scope}
    return Decision(failed, in_scope, escalated, actions)


def batches(order: Sequence[str], max_parallel: int | None) -> tuple[tuple[str, ...], ...]:
    """The environment's nodes cut into batches updated one after the other."""
    size = batch_size(order, max_parallel)
    return tuple(tuple(order[i : i + size]) for i in range(0, len(order), size))


def batch_size(order: Sequence[str], max_parallel: int | None) -> int:
    """How many nodes are worked on at once: `max_parallel`, by default all of them."""
    return max_parallel or max(len(order), 1)


def policy_fields(policy: Policy) -> dict[str, Any]:
    """The policy as a deployment's `Started` event stores it: its fields by name."""
    return asdict(policy)


def policy_of(fields: Mapping[str, Any]) -> Policy:
    """The policy a `Started` event stored; ValueError for a strategy or fallback unknown here."""
    strategy = next((s for s in STRATEGIES if s == fields["strategy"]), None)
    fallback = next((f for f in FALLBACKS if f == fields["fallback"]), None)
    if strategy is None or fallback is None:
        raise ValueError(f"unknown strategy or fallback in stored events: {dict(fields)}")
    return Policy(strategy, fallback, fields.get("max_parallel"), fields.get("max_failures"))
