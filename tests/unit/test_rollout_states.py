"""The environment rollout's lifecycle table, its guards inside the Deployment aggregate, and
stored events that read the same now that states, triggers and outcomes are StrEnums."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edeliver.adapters.events.event_store import open_deployments
from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.errors import UsageError
from edeliver.core.domain.lifecycle import IllegalTransition, NodeState, Step, Trigger
from edeliver.core.domain.rollout_states import ROLLOUT, Outcome, RolloutState, RolloutTrigger

RUNNING, INTERRUPTED, ENDED = RolloutState


def _deployment(deployment_id: str = "00000000-0000-4000-8000-000000000001") -> Deployment:
    return Deployment(
        deployment_id=deployment_id, app="hello", environment="prod", version="1.0.0",
        mode="release", policy={"strategy": "one_for_all", "fallback": "rollback"},
        order=["n0"], batches=[["n0"]], started_by="ann@laptop",
        started_at="2026-01-01T00:00:00+00:00",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("state", "trigger", "destination"),
    [
        (RUNNING, RolloutTrigger.INTERRUPT, INTERRUPTED),
        (INTERRUPTED, RolloutTrigger.RESUME, RUNNING),
        (RUNNING, RolloutTrigger.RESUME, RUNNING),
        (RUNNING, RolloutTrigger.FINISH, ENDED),
        (RUNNING, RolloutTrigger.REFUSE, ENDED),
        (RUNNING, RolloutTrigger.ABANDON, ENDED),
        (INTERRUPTED, RolloutTrigger.ABANDON, ENDED),
    ],
)
def test_the_rollout_table_leads_each_trigger_where_the_design_says(
    state: str, trigger: str, destination: str
) -> None:
    """Each row of the rollout's lifecycle, as the module's diagram draws it."""
    assert ROLLOUT.next_state(state, trigger) == destination


@pytest.mark.parametrize(
    ("state", "trigger"),
    [(INTERRUPTED, RolloutTrigger.FINISH), (INTERRUPTED, RolloutTrigger.INTERRUPT)]
    + [(ENDED, trigger) for trigger in RolloutTrigger],
)
def test_the_rollout_table_refuses_what_the_design_does_not_allow(state: str, trigger: str) -> None:
    """An interrupted deployment resumes before it finishes; nothing leaves `ended`."""
    with pytest.raises(IllegalTransition):
        ROLLOUT.next_state(state, trigger)


def test_a_deployment_that_ended_refuses_to_resume_interrupt_or_be_abandoned() -> None:
    """The guard sits in the aggregate: one clear UsageError naming the deployment and how it
    ended, and no event recorded."""
    deployment = _deployment()
    deployment.finish("2026-01-01T00:01:00+00:00")
    recorded = len(deployment.collect_events())
    for command in (
        lambda: deployment.resume("bob@ci"),
        lambda: deployment.interrupt("Ctrl-C"),
        lambda: deployment.abandon("rebuilt", "bob@ci", "2026-01-01T00:02:00+00:00"),
    ):
        with pytest.raises(UsageError, match=r"^deployment 00000000 already ended \(failed\)$"):
            command()
    assert recorded == 2 and deployment.collect_events() == []


def test_an_interrupted_deployment_finishes_only_once_it_is_resumed() -> None:
    """Finishing what was never resumed is a bug in the caller, never a stored event."""
    deployment = _deployment()
    deployment.interrupt("Ctrl-C")
    with pytest.raises(IllegalTransition):
        deployment.finish("2026-01-01T00:01:00+00:00")
    deployment.resume("bob@ci")
    deployment.finish("2026-01-01T00:01:00+00:00")
    assert (deployment.rollout_state, deployment.outcome) == (ENDED, "failed")


def test_abandoning_without_a_reason_is_refused() -> None:
    deployment = _deployment()
    with pytest.raises(UsageError, match="abandoning needs a reason"):
        deployment.abandon("  ", "bob@ci", "2026-01-01T00:02:00+00:00")


def test_enum_values_are_the_strings_events_always_stored() -> None:
    """Stored events of earlier versions name states, triggers, steps and outcomes by these
    strings: the enums must keep them."""
    assert [str(s) for s in NodeState][:5] == [
        "pending", "preparing", "installing", "activating", "verifying",
    ]  # fmt: skip
    assert (Trigger.START, Trigger.FAIL, Trigger.ROLLED_BACK) == ("start", "fail", "rolled_back")
    assert list(Step) == ["prepare", "install", "activate", "verify"]
    assert list(Outcome) == ["succeeded", "failed", "refused", "abandoned"]


def test_stored_events_hold_plain_strings_and_replay_to_the_same_rollout(tmp_path: Path) -> None:
    """A deployment stored, interrupted, resumed and ended replays to the same states, and its
    stored fields are the plain strings an older edeliver wrote and reads."""
    deployments = open_deployments(tmp_path, "")
    deployment = _deployment()
    deployments.begin(deployment)
    deployment.transition("n0", Trigger.START)
    deployment.interrupt("Ctrl-C")
    deployment.resume("bob@ci")
    deployment.refuse("n0 differs", "2026-01-01T00:01:00+00:00")
    deployments.end(deployment)
    again = deployments.load(str(deployment.id))
    assert (again.rollout_state, again.outcome, again.end_reason) == (
        ENDED, "refused", "n0 differs",
    )  # fmt: skip
    assert again.states == {"n0": "preparing"}
    stored = deployments.recorder.select_notifications(start=1, limit=50)
    transitioned = next(n for n in stored if n.topic.endswith("NodeTransitioned"))
    fields = json.loads(transitioned.state)
    assert (fields["trigger"], fields["src"], fields["dest"]) == ("start", "pending", "preparing")
    deployments.close()
