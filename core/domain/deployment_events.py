"""The Deployment's events whose shape changed, with how each earlier version is upcast when it
is read back (eventsourcing's `class_version` and `upcast_vN_vN+1`).

Version 2 of each carries what it changes, as the command computed it (`deployment_changes`), so
its apply body only assigns. Version 1 did not, and what it lacks depends on the state before
the event, not on the event: its upcast leaves those fields None, and the apply body derives
them from that state with the command's own function, which gives what version 1's apply body
gave. The aggregate names these classes in its body, so their topics stay its own
(`...deployment:Deployment.NodeTransitioned`).
"""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate


class NodeProbed(Aggregate.Event):
    """Version 2 records every node's release before the deployment, as the probe leaves it."""

    class_version = 2
    node: str
    facts: dict[str, object]
    current_version: str | None
    previous: dict[str, str | None] | None  # None: version 1, derived from the state

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Only a node's first probe fixes its release: whether it was depends on the state."""
        state["previous"] = None


class NodeTransitioned(Aggregate.Event):
    """Version 2 records the node's new reason, the failures awaiting a decision and the
    pending actions, as the transition leaves them (`transition_changes`)."""

    class_version = 2
    node: str
    trigger: str
    src: str
    dest: str
    detail: str
    reason: str | None  # None: the node keeps its reason
    undecided: list[str] | None  # None: version 1, derived from the state
    pending_actions: dict[str, str] | None  # None: version 1, derived from the state

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """The failures awaiting a decision and the pending actions are the state's, changed;
        so is a failed rollback's reason, which quotes the node's reason before."""
        state.update(reason=None, undecided=None, pending_actions=None)


class FallbackDecided(Aggregate.Event):
    """Version 2 records the failures decided, whether any decision escalated, the failures
    still awaiting one and the pending actions, as the decision leaves them."""

    class_version = 2
    failed_node: str
    scope: list[str]
    escalated: bool  # this decision
    actions: dict[str, str]  # this decision's
    failures: int | None  # None: version 1, derived from the state
    any_escalated: bool | None
    undecided: list[str] | None
    pending_actions: dict[str, str] | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """All four depend on the state: they count and add to what came before."""
        state.update(failures=None, any_escalated=None, undecided=None, pending_actions=None)
