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
    """Version 2 records whether this is the node's first probe, which fixes its release
    before the deployment."""

    class_version = 2
    node: str
    facts: dict[str, object]
    current_version: str | None
    first: bool | None  # None: version 1, derived from the state

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Whether a probe was the node's first depends on the state."""
        state["first"] = None


class NodeTransitioned(Aggregate.Event):
    """Version 2 records the node's new reason, whether it now awaits a fallback decision and
    whether its pending action is carried out (`transition_changes`)."""

    class_version = 2
    node: str
    trigger: str
    src: str
    dest: str
    detail: str
    reason: str | None  # None: the node keeps its reason
    awaits_decision: bool | None  # None: version 1, derived from the state
    clears_pending: bool | None  # None: version 1, derived from the state

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Whether the node awaits a decision depends on its pending action; a failed
        rollback's reason quotes the node's reason before: both are the state's."""
        state.update(reason=None, awaits_decision=None, clears_pending=None)


class FallbackDecided(Aggregate.Event):
    """Version 2 records the failures decided so far, whether any decision escalated, and the
    actions it adds to the pending ones (`decision_changes`)."""

    class_version = 2
    failed_node: str
    scope: list[str]
    escalated: bool  # this decision
    actions: dict[str, str]  # this decision's
    failures: int | None  # None: version 1, derived from the state
    any_escalated: bool | None
    added: dict[str, str] | None  # this decision's actions where none was pending

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """All three depend on the state: they count and add to what came before."""
        state.update(failures=None, any_escalated=None, added=None)
