"""`where = "local"` tasks run by a real `sh` on this machine (LocalCommandHost), in a rollout on
the fakes: the 1.x variables reach the shell, and a command cut short by its time limit is
killed with its whole process group. What the runner decides is tested on an in-memory host in
tests/unit/test_task_runs.py and test_task_limits.py."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from edeliver.adapters.local.local_commands import LocalCommandHost
from edeliver.core.domain.errors import RefusedError
from edeliver.core.domain.tasks import TaskSpec
from edeliver.core.usecases.loaded_task import LoadedTask
from edeliver.core.usecases.task_context import TaskCommandFailed, TaskContext
from tests.support.faults_tasks import gone
from tests.support.simulation import Simulation
from tests.support.waiting import process_ended, wait_for

STAGE = "pre_start_deployed_release"


def spec(name: str, stage: str, **settings: Any) -> TaskSpec:
    return TaskSpec(name=name, stage=stage, source=f".deliver/tasks/{name}.py", **settings)


def simulation(tmp_path: Path, nodes: int, step_timeout: float, **policy: Any) -> Simulation:
    sim = Simulation.create(tmp_path, nodes, in_memory=True, step_timeout=step_timeout, **policy)
    sim.local = LocalCommandHost(tmp_path)
    return sim


def test_a_local_tasks_shell_sees_the_edeliver_1_variables(tmp_path: Path) -> None:
    """The variables given to a local task are exported to its `sh`, once per node."""
    sim = simulation(tmp_path, 2, step_timeout=30)
    script = 'echo "$NODE $HOSTS $APP $VERSION $DELIVER_TO $STAGE" >> marks'
    sim.tasks = [LoadedTask(spec("mark", STAGE, where="local"), script=script)]
    assert sim.deploy("1.0.0").outcome == "succeeded"
    lines = sorted((tmp_path / "marks").read_text().splitlines())
    assert lines == [
        f"n0 10.0.0.1 hello 1.0.0 /srv {STAGE}",
        f"n1 10.0.0.1 hello 1.0.0 /srv {STAGE}",
    ]


def test_a_hung_local_script_is_killed_with_its_children_at_its_limit(tmp_path: Path) -> None:
    """pre_erlang_update `sleep` past the step_timeout: killed with its children, the deployment
    refused by the limit, not after the sleep."""
    sim = simulation(tmp_path, 2, step_timeout=0.5)
    script = "sleep 60 & echo $! > child.pid; wait"
    sim.tasks = [LoadedTask(spec("hang", "pre_erlang_update", where="local"), script=script)]
    began = time.monotonic()
    with pytest.raises(RefusedError, match="task hang failed at pre_erlang_update"):
        sim.deploy("1.0.0")
    assert time.monotonic() - began < 30  # ended by its limit, not by the sleep
    assert gone(int((tmp_path / "child.pid").read_text()))


def test_a_python_tasks_command_is_killed_with_its_process_group(tmp_path: Path) -> None:
    """The step times out while the task waits on `ctx.run`: the command's whole process group
    is killed (its background subshell never marks late), and no other command starts."""
    sim = simulation(tmp_path, 1, step_timeout=0.5)
    after: list[str] = []

    def slow(ctx: TaskContext) -> TaskContext:
        try:
            ctx.run("(sleep 2; touch late-mark) & echo $! > late.pid; wait")
        finally:
            with contextlib.suppress(TaskCommandFailed):
                after.append(ctx.run("touch next-command"))
        return ctx

    sim.tasks = [LoadedTask(spec("slow", STAGE, where="local"), run=slow)]
    assert sim.deploy("1.0.0").outcome == "failed"
    late = int((tmp_path / "late.pid").read_text())
    wait_for(lambda: process_ended(late), 15, "the subshell that would mark late to be killed")
    assert not (tmp_path / "late-mark").exists()
    assert after == [] and not (tmp_path / "next-command").exists()
