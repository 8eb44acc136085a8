"""Elixir task modules during rollouts, on the fakes: one VM per stage of a node, how the VM is
reached (eval before the start, rpc after it and on hot upgrades), assigns handed on to Python,
failures (a module that does not compile, a VM that dies), cleanups in reverse, and the program
text itself (literals escaped, results read back)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edeliver.core.domain.model import Route
from edeliver.core.domain.tasks import TaskSpec
from edeliver.core.ports import CommandResult
from edeliver.core.usecases.build_tasks import run_build_stage
from edeliver.core.usecases.elixir_tasks import (
    PROGRAM_VARIABLE,
    RESULT_MARKER,
    ElixirModule,
    elixir_term,
    launch_script,
    results,
    vm_for,
)
from edeliver.core.usecases.loaded_task import LoadedTask
from edeliver.core.usecases.task_context import TaskContext
from tests.support.command_hosts import ScriptedCommandHost
from tests.support.simulation import Simulation

STAGE = "post_extract_release_archive"
CALL = re.compile(r'\{(\S+), "([^"]+)", (true|false)\}')


def module_task(
    name: str, stage: str = STAGE, cleanup: bool = False, **settings: Any
) -> LoadedTask:
    spec = TaskSpec(name=name, stage=stage, source=f".deliver/tasks/{name}.ex:1", **settings)
    module = ElixirModule(f".deliver/tasks/{name}.ex", "", f"Deploy.T{name}", cleanup, "")
    return LoadedTask(spec, module=module)


VMS: dict[str, list[str]] = {}  # node: the VMs the fakes started, by `answer`


def answer(fail: set[str] | None = None, assigns: Mapping[str, Any] | None = None) -> Any:
    """A node's VM: each task of the program ends ok (assigning its name) unless in `fail`;
    a failed critical one ends the program, as the runner does."""

    def vm(script: str, env: Mapping[str, str]) -> CommandResult:
        VMS.setdefault(env["NODE"], []).append(f"{script}\n{env[PROGRAM_VARIABLE]}")
        lines = []
        kept = dict(assigns or {})
        for _, name, critical in CALL.findall(env[PROGRAM_VARIABLE]):
            ok = name not in (fail or set())
            kept = {**kept, name: env.get("NODE", "")} if ok else kept
            fields = {"task": name, "ok": ok, "output": f"said {name}", "assigns": kept}
            lines.append(RESULT_MARKER + json.dumps(fields))
            if not ok and critical == "true":
                break
        return CommandResult(0, "\n".join(lines))

    return vm


def simulation(tmp_path: Path, nodes: int = 2, **policy: Any) -> Simulation:
    VMS.clear()
    return Simulation.create(tmp_path, nodes, in_memory=True, step_timeout=30, **policy)


def vm_scripts(sim: Simulation, node: str) -> list[str]:
    """Each VM started on the node: its launch script, then the program it ran."""
    return VMS.get(node, [])


def task_events(sim: Simulation) -> list[dict[str, Any]]:
    return [e[2] for e in sim.trace if e[0] == "event" and e[1] == "TaskRan"]


def test_the_elixir_tasks_of_a_stage_run_in_one_vm_per_node(tmp_path: Path) -> None:
    """Three neighbouring Elixir tasks of a stage: one `eval` per node, each task recorded."""
    sim = simulation(tmp_path)
    for host in sim.hosts.values():
        host.commands = answer()
    sim.tasks = [module_task("10_a"), module_task("20_b"), module_task("30_c")]
    assert sim.deploy("1.0.0").outcome == "succeeded"
    for node in sim.hosts:
        (script,) = vm_scripts(sim, node)
        assert "bin/hello eval" in script and "releases/1.0.0" in script
    ran = [(e["node"], e["task"], e["outcome"]) for e in task_events(sim)]
    assert sorted(ran) == sorted((n, t, "ok") for n in sim.hosts for t in ("10_a", "20_b", "30_c"))


def test_a_python_task_reads_what_the_elixir_tasks_before_it_assigned(tmp_path: Path) -> None:
    """Assigns flow from Elixir to Python on a node; a Python task splits the VMs around it."""
    sim = simulation(tmp_path)
    seen: dict[str, dict[str, Any]] = {}

    def read(ctx: TaskContext) -> TaskContext:
        seen[ctx.node.name if ctx.node else "?"] = dict(ctx.assigns)
        return ctx

    for host in sim.hosts.values():
        host.commands = answer(assigns={"from": "before"})
    read_spec = TaskSpec(name="20_read", stage=STAGE, source="20_read.py")
    sim.tasks = [module_task("10_a"), LoadedTask(read_spec, run=read), module_task("30_c")]
    assert sim.deploy("1.0.0").outcome == "succeeded"
    assert seen == {n: {"from": "before", "10_a": n} for n in sim.hosts}
    assert all(len(vm_scripts(sim, n)) == 2 for n in sim.hosts)


def test_tasks_after_the_start_go_into_the_running_vm(tmp_path: Path) -> None:
    """post_start_deployed_release: `rpc` into the VM `current` runs, not a new `eval` VM."""
    sim = simulation(tmp_path, nodes=1)
    sim.hosts["n0"].commands = answer()
    sim.tasks = [module_task("warm", stage="post_start_deployed_release")]
    assert sim.deploy("1.0.0").outcome == "succeeded"
    (script,) = vm_scripts(sim, "n0")
    assert "cd current && bin/hello rpc" in script
    assert vm_for("node", "pre_upgrade_release", hot=True) == "rpc"
    assert vm_for("once", "pre_upgrade_release", hot=False) == "eval"  # the full route
    assert vm_for("local", "post_start_deployed_release", hot=True) == "local"


def test_an_elixir_task_after_a_hot_upgrade_goes_into_the_upgraded_vm(tmp_path: Path) -> None:
    """mode = "upgrade", hot route: the post_upgrade_release task, then the
    post_start_deployed_release one, each by `rpc` into the running VM (no `eval`)."""
    sim = simulation(tmp_path, nodes=1, mode="upgrade")
    sim.routes = {"n0": Route(True, "hot upgrade from 0.9.0", "0.9.0", "0.9.0", "0.9.0")}
    sim.hosts["n0"].commands = answer()
    sim.tasks = [
        module_task("started", stage="post_start_deployed_release"),
        module_task("upgraded", stage="post_upgrade_release"),
    ]
    assert sim.deploy("1.0.0").outcome == "succeeded"
    scripts = vm_scripts(sim, "n0")
    assert [CALL.findall(s)[0][1] for s in scripts] == ["upgraded", "started"]
    assert all("cd current && bin/hello rpc" in s and " eval " not in s for s in scripts)
    ran = [(e["stage"], e["task"], e["outcome"]) for e in task_events(sim)]
    assert ran == [
        ("post_upgrade_release", "upgraded", "ok"),
        ("post_start_deployed_release", "started", "ok"),
    ]


def every_task_ends_ok(script: str, env: Mapping[str, str]) -> CommandResult:
    """A build host's answer: an Elixir program's tasks all end ok."""
    calls = CALL.findall(env.get(PROGRAM_VARIABLE, ""))
    ended = [{"task": name, "ok": True, "output": "", "assigns": {}} for _, name, _ in calls]
    return CommandResult(0, "\n".join(RESULT_MARKER + json.dumps(e) for e in ended))


def test_a_build_stages_elixir_task_runs_where_the_projects_mix_is(tmp_path: Path) -> None:
    """A container build's Elixir `where: build` task goes to the image's Mix (`mix run`), its
    shell task to the build host (the mounted sources here), a `local` one here; without such
    a Mix of their own, Elixir tasks run on the build host."""
    build, mix, here = (ScriptedCommandHost(every_task_ends_ok) for _ in range(3))
    stage = "post_erlang_clean_compile"
    tasks = [
        module_task("10_sum", stage=stage, where="build"),
        LoadedTask(TaskSpec("20_sh", stage, "20_sh.sh", where="build"), script="echo sh"),
        LoadedTask(TaskSpec("30_here", stage, "30_here.sh", where="local"), script="echo here"),
    ]
    asyncio.run(run_build_stage(tasks, stage, "ledger", build, here, {}, mix_host=mix))
    assert [len(mix.scripts), build.scripts, here.scripts] == [1, ["echo sh"], ["echo here"]]
    assert 'mix run --no-start "$f"' in mix.scripts[0]
    asyncio.run(run_build_stage(tasks[:1], stage, "ledger", build, here, {}))
    assert 'mix run --no-start "$f"' in build.scripts[-1] and len(mix.scripts) == 1


def test_a_failing_critical_elixir_task_stops_its_vm_and_the_cleanups_run_last_first(
    tmp_path: Path,
) -> None:
    """The gate fails on n1: the tasks after it never run there, and every node's Elixir
    cleanups run in reverse (one VM each, `cleanup` phase) before its rollback."""
    sim = simulation(tmp_path, nodes=2, strategy="one_for_all", fallback="rollback")
    sim.hosts["n0"].commands = answer()
    sim.hosts["n1"].commands = answer(fail={"20_gate"})
    sim.tasks = [
        module_task("10_a", cleanup=True),
        module_task("20_gate"),
        module_task("30_after", cleanup=True),
    ]
    deployment = sim.deploy("1.0.0")
    assert deployment.outcome == "failed"
    assert (
        "task 20_gate failed" in deployment.reasons["n1"]
        and "said 20_gate" in deployment.reasons["n1"]
    )
    n1 = [(e["task"], e["outcome"]) for e in task_events(sim) if e["node"] == "n1"]
    assert n1 == [("10_a", "ok"), ("20_gate", "failed"), ("10_a", "cleaned")]
    cleanups = [s for s in vm_scripts(sim, "n0") if "phase: :cleanup" in s]
    assert [CALL.findall(s)[0][1] for s in cleanups] == ["30_after", "10_a"]


def test_a_module_that_does_not_compile_fails_its_first_task_with_the_file_and_line(
    tmp_path: Path,
) -> None:
    """The compile error names the file and line; no task of the VM ran."""
    sim = simulation(tmp_path, nodes=1)
    error = {"compile_error": ".deliver/tasks/10_a.ex:3: undefined function nope/0"}
    sim.hosts["n0"].commands = lambda s, e: CommandResult(0, RESULT_MARKER + json.dumps(error))
    sim.tasks = [module_task("10_a"), module_task("20_b")]
    deployment = sim.deploy("1.0.0")
    assert deployment.outcome == "failed"
    assert ".deliver/tasks/10_a.ex:3: undefined function nope/0" in deployment.reasons["n0"]
    assert [(e["task"], e["outcome"]) for e in task_events(sim)] == [("10_a", "failed")]


def test_a_vm_that_dies_fails_the_task_it_was_running(tmp_path: Path) -> None:
    """No result line at all (the VM was killed): the task fails with what the VM said."""
    sim = simulation(tmp_path, nodes=1)
    sim.hosts["n0"].commands = lambda s, e: CommandResult(137, "Killed")
    sim.tasks = [module_task("10_a")]
    deployment = sim.deploy("1.0.0")
    assert "Killed" in deployment.reasons["n0"] and "exit 137" in deployment.reasons["n0"]


def test_elixir_literals_escape_interpolation_quotes_and_control_characters() -> None:
    """The context reaches Elixir as a literal: nothing in a value is ever evaluated."""
    value = {"s": 'a#{b}"\\\n\x01', "f": [1e-05, 2.5, 3], "n": None, "t": True}
    assert elixir_term(value) == (
        '%{"s" => "a\\#{b}\\"\\\\\\n\\x01", "f" => [1.0e-5, 2.5, 3], "n" => nil, "t" => true}'
    )


def test_the_program_goes_through_a_private_file_never_an_argument() -> None:
    """The script names no part of the program: it comes in an environment variable, and the
    VM deletes the file it was written to once read."""
    script = launch_script("eval", "hello", "1.0.0")
    assert "mktemp" in script and "Deploy" not in script
    assert 'bin/hello eval "c = File.read!(\\"$f\\"); File.rm(\\"$f\\");' in script


def test_results_separate_the_task_lines_from_what_the_vm_said() -> None:
    """Result lines are read back; the rest (compiler warnings, a boot error) is kept apart."""
    line = RESULT_MARKER + json.dumps({"task": "a", "ok": True, "output": "x", "assigns": {}})
    compile_error, found, other = results(f"warning: unused\n{line}\n")
    assert compile_error is None and other == "warning: unused"
    assert [(r.task, r.ok, r.output) for r in found] == [("a", True, "x")]
