"""Tasks during rollouts, on the fakes: stages around steps, where, critical or not, once,
initial, cleanups in reverse on rollback, output kept bounded in the events, resume."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import pytest

from edeliver.adapters.events.event_store_faults import SimulatedCrash
from edeliver.core.domain.errors import RefusedError
from edeliver.core.domain.model import Route
from edeliver.core.domain.tasks import Selection, TaskSpec
from edeliver.core.ports import CommandResult
from edeliver.core.usecases.loaded_task import LoadedTask
from edeliver.core.usecases.task_context import TaskCommandFailed, TaskContext
from tests.support.command_hosts import ScriptedCommandHost
from tests.support.simulation import Simulation
from tests.support.waiting import wait_for


def spec(name: str, stage: str, **settings: Any) -> TaskSpec:
    return TaskSpec(name=name, stage=stage, source=f".deliver/tasks/{name}.py", **settings)


def shell_task(name: str, stage: str, script: str, **settings: Any) -> LoadedTask:
    return LoadedTask(spec(name, stage, **settings), script=script)


def simulation(tmp_path: Path, nodes: int = 3, **policy: Any) -> Simulation:
    sim = Simulation.create(tmp_path, nodes, in_memory=True, step_timeout=30, **policy)
    sim.local = ScriptedCommandHost()
    return sim


def commands(sim: Simulation, node: str | None = None) -> list[tuple[str, str]]:
    """(stage, script) of every task command run on the nodes, in order."""
    return [(e[3], e[2]) for e in sim.trace if e[0] == "command" and node in (None, e[1])]


def task_events(sim: Simulation) -> list[dict[str, Any]]:
    return [e[2] for e in sim.trace if e[0] == "event" and e[1] == "TaskRan"]


def steps_and_commands(sim: Simulation, node: str) -> list[str]:
    return [
        e[2] if e[0] == "step" else f"{e[3]}:{e[2]}"
        for e in sim.trace
        if e[0] in ("step", "command") and e[1] == node
    ]


def test_node_stages_fire_around_the_steps_in_edeliver_1_order(tmp_path: Path) -> None:
    sim = simulation(tmp_path, nodes=2)
    sim.tasks = [
        shell_task(stage, stage, f"echo {stage}")
        for stage in (
            "post_start_deployed_release",
            "pre_extract_release_archive",
            "pre_start_deployed_release",
            "post_extract_release_archive",
        )
    ]
    assert sim.deploy("1.0.0").outcome == "succeeded"
    assert steps_and_commands(sim, "n1") == [
        "prepare",
        "pre_extract_release_archive:echo pre_extract_release_archive",
        "install",
        "post_extract_release_archive:echo post_extract_release_archive",
        "pre_start_deployed_release:echo pre_start_deployed_release",
        "activate",
        "verify",
        "post_start_deployed_release:echo post_start_deployed_release",
    ]


UPGRADE_STAGES = ("post_start_deployed_release", "post_upgrade_release", "pre_upgrade_release")


def test_in_upgrade_mode_the_started_stage_fires_after_the_upgrade_on_either_route(
    tmp_path: Path,
) -> None:
    """mode = "upgrade": post_start_deployed_release fires on a node upgraded hot and on one
    taking the full route alike, after verify and post_upgrade_release, recorded as any stage."""
    sim = simulation(tmp_path, nodes=2, mode="upgrade")
    sim.routes = {
        "n0": Route(True, "hot upgrade from 0.9.0", "0.9.0", "0.9.0", "0.9.0"),
        "n1": Route(False, "full release: no VM answers on the node"),
    }
    sim.tasks = [shell_task(stage, stage, f"echo {stage}") for stage in UPGRADE_STAGES]
    assert sim.deploy("1.0.0").outcome == "succeeded"
    for node in ("n0", "n1"):
        assert steps_and_commands(sim, node) == [
            "prepare",
            "install",
            "pre_upgrade_release:echo pre_upgrade_release",
            "activate",
            "verify",
            "post_upgrade_release:echo post_upgrade_release",
            "post_start_deployed_release:echo post_start_deployed_release",
        ]
        ran = [(e["stage"], e["outcome"]) for e in task_events(sim) if e["node"] == node]
        assert ran == [(s, "ok") for s in reversed(UPGRADE_STAGES)]


def test_a_critical_failure_after_a_hot_upgrade_fails_the_node_and_rolls_it_back(
    tmp_path: Path,
) -> None:
    """A critical post_start_deployed_release task failing on a node upgraded hot fails its
    verify step like a post_upgrade_release one: the node is rolled back by its route."""
    sim = simulation(tmp_path, nodes=1, mode="upgrade")
    hot = Route(True, "hot upgrade from 0.9.0", "0.9.0", "0.9.0", "0.9.0")
    sim.routes = {"n0": hot}
    sim.tasks = [shell_task("gate", "post_start_deployed_release", "exit 3")]
    sim.hosts["n0"].commands = lambda script, env: CommandResult(3, "gate closed")
    ended = sim.deploy("1.0.0")
    assert ended.states == {"n0": "rolled_back"}
    rolled = [e for e in sim.trace if e[0] == "rolled_back_by"]
    assert rolled == [("rolled_back_by", "n0", hot.why, "0.9.0")]
    assert [(e["stage"], e["outcome"]) for e in task_events(sim)] == [
        ("post_start_deployed_release", "failed")
    ]


def test_a_python_task_runs_commands_on_its_node_and_passes_assigns_along(tmp_path: Path) -> None:
    sim = simulation(tmp_path, nodes=2)
    seen: dict[str, Any] = {}

    def first(ctx: TaskContext) -> TaskContext:
        said = ctx.run("hostname")
        return ctx.assign(said=said, node=ctx.node.name if ctx.node else None)

    def second(ctx: TaskContext) -> TaskContext:
        seen[ctx.node.name if ctx.node else "?"] = dict(ctx.assigns)
        return ctx

    for host_name, host in sim.hosts.items():
        host.commands = lambda script, env, n=host_name: CommandResult(0, f"{n}:{env['NODE']}")
    stage = "post_extract_release_archive"
    sim.tasks = [LoadedTask(spec("a", stage), run=first), LoadedTask(spec("b", stage), run=second)]
    assert sim.deploy("1.0.0").outcome == "succeeded"
    assert seen == {"n0": {"said": "n0:n0", "node": "n0"}, "n1": {"said": "n1:n1", "node": "n1"}}
    assert commands(sim, "n0") == [(stage, "hostname")]


def test_a_failing_non_critical_task_is_recorded_and_the_node_goes_on(tmp_path: Path) -> None:
    sim = simulation(tmp_path, nodes=2)
    sim.hosts["n1"].commands = lambda script, env: CommandResult(3, "no cache to warm")
    sim.tasks = [shell_task("warm", "post_start_deployed_release", "warm", critical=False)]
    assert sim.deploy("1.0.0").outcome == "succeeded"
    failed = [e for e in task_events(sim) if e["outcome"] == "failed"]
    assert [(e["node"], e["task"]) for e in failed] == [("n1", "warm")]
    assert "no cache to warm" in failed[0]["output"] and "(exit 3)" in failed[0]["output"]
    assert {h.running for h in sim.hosts.values()} == {"1.0.0"}


def test_a_critical_failure_rolls_back_and_cleans_up_in_reverse_on_every_node_that_ran(
    tmp_path: Path,
) -> None:
    sim = simulation(tmp_path, nodes=3, strategy="one_for_all", fallback="rollback")
    cleaned: list[tuple[str, str]] = []

    def cleanup(name: str) -> Any:
        def undo(ctx: TaskContext) -> TaskContext:
            cleaned.append((ctx.node.name if ctx.node else "?", name))
            ctx.run(f"undo {name}")
            return ctx

        return undo

    stage = "post_extract_release_archive"
    sim.tasks = [
        LoadedTask(spec("10_a", stage), run=lambda ctx: ctx.run("do a"), cleanup=cleanup("10_a")),
        LoadedTask(spec("20_b", stage), run=lambda ctx: ctx.run("do b"), cleanup=cleanup("20_b")),
        shell_task("30_check", stage, "check"),
        shell_task("pre", "pre_rollback", "before rollback"),
        shell_task("post", "post_rollback", "after rollback"),
    ]
    sim.hosts["n2"].commands = lambda script, env: CommandResult(
        1 if script == "check" else 0, "check failed: schema too new" if script == "check" else ""
    )
    for host in sim.hosts.values():
        host.current = host.running = "0.9.0"
        host.releases.add("0.9.0")
    deployment = sim.deploy("1.0.0")
    assert deployment.outcome == "failed"
    assert "task 30_check failed" in deployment.reasons["n2"]
    assert "schema too new" in deployment.reasons["n2"]
    assert {h.running for h in sim.hosts.values()} == {"0.9.0"}
    ran_a = {e["node"] for e in task_events(sim) if e["task"] == "10_a" and e["outcome"] == "ok"}
    for node in ran_a:
        assert [name for n, name in cleaned if n == node] == ["20_b", "10_a"]
        seq = steps_and_commands(sim, node)
        assert seq[seq.index("pre_rollback:before rollback") :] == [
            "pre_rollback:before rollback",
            "post_extract_release_archive:undo 20_b",
            "post_extract_release_archive:undo 10_a",
            "roll_back",
            "post_rollback:after rollback",
        ]
    assert ran_a == {n for n, _ in cleaned}
    assert ran_a  # the check failed after 10_a ran somewhere


def test_a_once_task_runs_on_one_node_only(tmp_path: Path) -> None:
    sim = simulation(tmp_path, nodes=4, max_parallel=2)
    sim.tasks = [shell_task("migrate", "post_extract_release_archive", "migrate", where="once")]
    assert sim.deploy("1.0.0").outcome == "succeeded"
    assert [c for c in commands(sim) if c[1] == "migrate"] == [
        ("post_extract_release_archive", "migrate")
    ]


def test_a_failed_critical_once_task_fails_every_node_that_reaches_it(tmp_path: Path) -> None:
    sim = simulation(tmp_path, nodes=3, strategy="one_for_one", fallback="ignore")
    for host in sim.hosts.values():
        host.commands = lambda script, env: CommandResult(1, "migration failed")
    sim.tasks = [shell_task("migrate", "post_extract_release_archive", "migrate", where="once")]
    deployment = sim.deploy("1.0.0")
    assert deployment.outcome == "failed"
    assert len([c for c in commands(sim) if c[1] == "migrate"]) == 1
    assert all("migrate" in deployment.reasons[n] for n in ("n0", "n1", "n2"))


def test_initial_tasks_run_on_a_nodes_first_deploy_only(tmp_path: Path) -> None:
    sim = simulation(tmp_path, nodes=2)
    sim.hosts["n1"].current = sim.hosts["n1"].running = "0.9.0"
    sim.hosts["n1"].releases.add("0.9.0")
    sim.tasks = [shell_task("seed", "post_start_deployed_release", "seed", optional=("initial",))]
    assert sim.deploy("1.0.0").outcome == "succeeded"
    assert [e[1] for e in sim.trace if e[0] == "command"] == ["n0"]
    sim.trace.clear()
    assert sim.deploy("1.1.0").outcome == "succeeded"
    assert [e for e in sim.trace if e[0] == "command"] == []


def test_tags_select_optional_tasks_like_exunit(tmp_path: Path) -> None:
    sim = simulation(tmp_path, nodes=1)
    stage = "post_start_deployed_release"
    sim.tasks = [
        shell_task("plain", stage, "plain"),
        shell_task("seed", stage, "seed", optional=("seed",)),
        shell_task("slow", stage, "slow", optional=("slow",)),
    ]
    sim.deploy("1.0.0", selection=Selection(include=frozenset({"seed"})))
    assert [c[1] for c in commands(sim)] == ["plain", "seed"]
    sim.trace.clear()
    sim.deploy("1.1.0", selection=Selection(only=frozenset({"slow"})))
    assert [c[1] for c in commands(sim)] == ["slow"]


def test_a_tasks_output_is_kept_bounded_in_its_event(tmp_path: Path) -> None:
    sim = simulation(tmp_path, nodes=1)
    sim.hosts["n0"].commands = lambda s, e: CommandResult(0, "x" * 50_000 + "THE END")
    sim.tasks = [shell_task("chatty", "post_start_deployed_release", "chatty")]
    sim.deploy("1.0.0")
    (event,) = task_events(sim)
    assert len(event["output"]) <= 4000 and event["output"].endswith("THE END")


def test_local_tasks_run_here_with_edeliver_1_variables(tmp_path: Path) -> None:
    """A `where = "local"` task runs on this machine once per node, with that node's 1.x
    variables; nothing runs on the nodes."""
    here = ScriptedCommandHost()
    sim = simulation(tmp_path, nodes=2)
    sim.local = here
    sim.tasks = [shell_task("mark", "pre_start_deployed_release", "mark", where="local")]
    assert sim.deploy("1.0.0").outcome == "succeeded"
    names = ("NODE", "HOSTS", "APP", "VERSION", "DELIVER_TO", "STAGE")
    seen = sorted(tuple(env[name] for name in names) for _, env in here.ran)
    assert seen == [
        ("n0", "10.0.0.1", "hello", "1.0.0", "/srv", "pre_start_deployed_release"),
        ("n1", "10.0.0.1", "hello", "1.0.0", "/srv", "pre_start_deployed_release"),
    ]
    assert commands(sim) == []  # nothing ran on the nodes


def test_a_critical_task_failing_before_the_rollout_refuses_it(tmp_path: Path) -> None:
    sim = simulation(tmp_path, nodes=2)
    sim.local = ScriptedCommandHost(lambda script, env: CommandResult(7, "closed"))
    sim.tasks = [shell_task("gate", "pre_erlang_update", "exit 7", where="local")]
    with pytest.raises(RefusedError, match=r"task gate failed at pre_erlang_update.*nothing was"):
        sim.deploy("1.0.0")
    assert [e for e in sim.trace if e[0] == "step"] == []
    assert {h.running for h in sim.hosts.values()} == {None}


def test_resume_never_runs_again_a_task_that_ended(tmp_path: Path) -> None:
    for crash_after in (6, 9, 12, 15):
        sim = simulation(tmp_path / str(crash_after), nodes=2, max_parallel=1)
        (tmp_path / str(crash_after)).mkdir(parents=True, exist_ok=True)
        sim.tasks = [
            shell_task("a", "post_extract_release_archive", "a"),
            shell_task("b", "post_start_deployed_release", "b"),
        ]
        with pytest.raises(SimulatedCrash):
            sim.deploy("1.0.0", crash_after=crash_after)
        assert sim.resume().outcome == "succeeded"
        recorded = [(e["node"], e["task"]) for e in task_events(sim) if e["outcome"] == "ok"]
        assert sorted(recorded) == [("n0", "a"), ("n0", "b"), ("n1", "a"), ("n1", "b")]
        ran = [(e[1], e[2]) for e in sim.trace if e[0] == "command"]
        for node_task in set(ran):  # at most the one cut short runs twice
            assert ran.count(node_task) <= 2


def test_tasks_run_inside_the_step_timeout(tmp_path: Path) -> None:
    """A local command still running at the step's end is cancelled; the node fails saying so."""
    here = ScriptedCommandHost(hanging={"sleep 5"})
    sim = Simulation.create(tmp_path, 1, in_memory=True, step_timeout=0.2)
    sim.local = here
    sim.tasks = [shell_task("slow", "pre_start_deployed_release", "sleep 5", where="local")]
    deployment = sim.deploy("1.0.0")
    assert deployment.outcome == "failed"
    assert "timed out" in deployment.reasons["n0"]
    assert here.cancelled == ["sleep 5"]


def test_a_python_tasks_command_stops_with_its_step_and_no_other_starts(tmp_path: Path) -> None:
    """The step times out while the task waits on `ctx.run`: the command is cancelled, and the
    task's next `ctx.run` is refused instead of run (the process group killed with it:
    tests/integration/test_local_task_processes.py)."""
    here = ScriptedCommandHost(hanging={"wait"})
    sim = Simulation.create(tmp_path, 1, in_memory=True, step_timeout=0.5)
    sim.local = here
    after: list[str] = []
    ended = threading.Event()

    def slow(ctx: TaskContext) -> TaskContext:
        try:
            ctx.run("wait")
        finally:
            with contextlib.suppress(TaskCommandFailed):
                after.append(ctx.run("next-command"))
            ended.set()
        return ctx

    stage = "pre_start_deployed_release"
    sim.tasks = [LoadedTask(spec("slow", stage, where="local"), run=slow)]
    assert sim.deploy("1.0.0").outcome == "failed"
    wait_for(ended.is_set, 15, "the task's body to end")
    assert here.cancelled == ["wait"]
    assert after == [] and here.scripts == ["wait"]
