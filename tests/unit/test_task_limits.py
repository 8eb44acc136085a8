"""Every task run is recorded when it starts, ends at its time limit, keeps no secret in its
output, and a hung Python body never stalls the other nodes (on the fakes; a real `sh` killed
with its process tree: tests/integration/test_local_task_processes.py)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edeliver.core.domain.errors import RefusedError
from edeliver.core.domain.redaction import MARK, Redactor
from edeliver.core.domain.tasks import TaskSpec
from edeliver.core.ports import CommandResult
from edeliver.core.usecases.loaded_task import LoadedTask
from edeliver.core.usecases.task_context import TaskContext
from tests.support.command_hosts import ScriptedCommandHost
from tests.support.simulation import Simulation

NODE_STAGE = "pre_start_deployed_release"


def spec(name: str, stage: str, **settings: Any) -> TaskSpec:
    return TaskSpec(name=name, stage=stage, source=f".deliver/tasks/{name}.py", **settings)


def simulation(tmp_path: Path, nodes: int, step_timeout: float, **policy: Any) -> Simulation:
    sim = Simulation.create(tmp_path, nodes, in_memory=True, step_timeout=step_timeout, **policy)
    sim.local = ScriptedCommandHost()
    return sim


def events(sim: Simulation, kind: str) -> list[dict[str, Any]]:
    return [e[2] for e in sim.trace if e[0] == "event" and e[1] == kind]


@pytest.fixture
def hang() -> Iterator[threading.Event]:
    """What a hung Python body waits on; set at the end so its thread ends with the test."""
    release = threading.Event()
    yield release
    release.set()


def test_a_hung_local_task_before_the_rollout_is_cut_short_and_refuses(tmp_path: Path) -> None:
    """pre_erlang_update hung past the step_timeout: its command cancelled, the deployment
    refused before any node step, the run recorded as started and as failed."""
    sim = simulation(tmp_path, 2, step_timeout=0.5)
    sim.local = here = ScriptedCommandHost(hanging={"sleep 60"})
    sim.tasks = [LoadedTask(spec("hang", "pre_erlang_update", where="local"), script="sleep 60")]
    with pytest.raises(RefusedError, match="task hang failed at pre_erlang_update"):
        sim.deploy("1.0.0")
    assert here.cancelled == ["sleep 60"]
    assert [e[2] for e in sim.trace if e[0] == "step" and e[2] != "probe"] == []
    [started], [ran] = events(sim, "TaskStarted"), events(sim, "TaskRan")
    assert (started["task"], started["node"], started["timeout"]) == ("hang", "", 0.5)
    assert ran["outcome"] == "failed" and "timed out after 0.5s" in ran["output"]


def test_a_task_is_recorded_as_started_before_its_first_command(tmp_path: Path) -> None:
    """The TaskStarted event is stored before the task acts, so a live deployer is seen alive."""
    sim = simulation(tmp_path, 1, step_timeout=30)
    sim.tasks = [LoadedTask(spec("mark", NODE_STAGE), script="echo hi")]
    assert sim.deploy("1.0.0").outcome == "succeeded"
    kinds = [e[1] if e[0] == "event" else e[0] for e in sim.trace if e[0] in ("event", "command")]
    assert kinds.index("TaskStarted") < kinds.index("command") < kinds.index("TaskRan")


@pytest.mark.parametrize(("critical", "outcome"), [(False, "succeeded"), (True, "failed")])
def test_a_hung_after_rollout_task_ends_at_its_limit(
    tmp_path: Path, hang: threading.Event, critical: bool, outcome: str
) -> None:
    """post_erlang_update hung in Python: cut short at the step_timeout; a critical one fails
    the deployment, a non-critical one is recorded failed and the deployment succeeds."""
    sim = simulation(tmp_path, 2, step_timeout=0.5)
    body = LoadedTask(
        spec("hang", "post_erlang_update", where="local", critical=critical),
        run=lambda ctx: hang.wait(),
    )
    sim.tasks = [body]
    deployment = sim.deploy("1.0.0")
    assert deployment.outcome == outcome
    assert set(deployment.states.values()) == {"updated"}
    [ran] = events(sim, "TaskRan")
    assert ran["outcome"] == "failed" and "timed out after 0.5s" in ran["output"]


def test_a_hung_python_task_on_one_node_does_not_stall_the_others(
    tmp_path: Path, hang: threading.Event
) -> None:
    """One node's body never returns: that node fails at its step_timeout (and is rolled back),
    the next nodes' bodies still run (one at a time, max_parallel = 1), and the hung thread is a
    daemon thread."""
    sim = simulation(tmp_path, 3, step_timeout=0.5, strategy="one_for_one", max_parallel=1)
    ran_on: list[str] = []

    def body(ctx: TaskContext) -> TaskContext:
        assert ctx.node is not None
        if ctx.node.name == "n0":
            hang.wait()
        ran_on.append(ctx.node.name)
        return ctx

    sim.tasks = [LoadedTask(spec("check", NODE_STAGE, where="node"), run=body)]
    deployment = sim.deploy("1.0.0")
    assert deployment.states == {"n0": "rolled_back", "n1": "updated", "n2": "updated"}
    assert ran_on == ["n1", "n2"]
    assert deployment.reasons["n0"] == (
        "activate: n0: task check failed at pre_start_deployed_release: timed out after 0.5s "
        "and was stopped"
    )
    hung = [t for t in threading.enumerate() if t.name.startswith("edeliver-task-")]
    assert hung and all(t.daemon for t in hung)


def test_a_hung_non_critical_task_at_a_node_stage_is_recorded_and_skipped(
    tmp_path: Path, hang: threading.Event
) -> None:
    """The task's limit is its own, not a share of the step's: cut short, it is recorded failed
    and the node's step goes on to the end, updated."""
    sim = simulation(tmp_path, 2, step_timeout=0.5)
    body = LoadedTask(spec("warm", NODE_STAGE, critical=False), run=lambda ctx: hang.wait())
    sim.tasks = [body]
    deployment = sim.deploy("1.0.0")
    assert deployment.outcome == "succeeded"
    assert set(deployment.states.values()) == {"updated"}
    runs = events(sim, "TaskRan")
    assert sorted((r["node"], r["outcome"]) for r in runs) == [("n0", "failed"), ("n1", "failed")]
    assert all("timed out after 0.5s and was stopped" in r["output"] for r in runs)


def test_output_kept_in_events_and_reasons_hides_the_deployers_secrets(tmp_path: Path) -> None:
    """A failing task printing a secret of the deployer and a URL password: neither is kept."""
    sim = simulation(tmp_path, 1, step_timeout=30)
    sim.redact = Redactor.of_environment({"AWS_SECRET_ACCESS_KEY": "aws-secret-value-42"})
    said = "key=aws-secret-value-42 url=postgresql://app:db-pw-77@db/app"
    sim.local = ScriptedCommandHost(lambda script, env: CommandResult(3, said))
    script = f"echo {said}; exit 3"
    sim.tasks = [LoadedTask(spec("leak", NODE_STAGE, where="local"), script=script)]
    deployment = sim.deploy("1.0.0")
    [ran] = events(sim, "TaskRan")
    for kept in (ran["output"], deployment.reasons["n0"]):
        assert "aws-secret-value-42" not in kept and "db-pw-77" not in kept
        assert f"key={MARK}" in kept and f"app:{MARK}@db" in kept
    assert os.environ.get("AWS_SECRET_ACCESS_KEY") != "aws-secret-value-42"
