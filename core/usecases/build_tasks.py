"""A build's tasks (DESIGN §7): run in order at each build stage, on the build host or here, a
critical failure stopping the build with the tail of what the task said."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

from edeliver.core.domain.errors import EdeliverError
from edeliver.core.domain.redaction import Redactor
from edeliver.core.domain.tasks import ordered
from edeliver.core.ports import CommandHost
from edeliver.core.usecases.elixir_tasks import run_modules, vm_for
from edeliver.core.usecases.loaded_task import LoadedTask
from edeliver.core.usecases.task_context import TaskContext
from edeliver.core.usecases.task_outcomes import call_body, command_outcome, last_lines
from edeliver.core.usecases.task_threads import TaskThreads

# How edeliver 1.x's `status` function printed (and legacy hooks still print) a line.
STATUS_PREFIX = "-----> "


class TaskFailed(EdeliverError):
    """A critical task failed outside any node's flow (in a build); the message has its output."""


async def run_build_stage(
    tasks: Sequence[LoadedTask],
    stage: str,
    app: str,
    build_host: CommandHost,
    local: CommandHost,
    env: Mapping[str, str],
    show: Callable[[str], None] = lambda _: None,
    redact: Redactor | None = None,
    mix_host: CommandHost | None = None,
) -> None:
    """Run a build stage's tasks in order on the build host (`local` ones here); optional tasks
    are skipped (builds take no tag selection). TaskFailed when a critical one fails, with its
    output's tail `redact`ed of secrets. `show` gets the `status` lines of legacy hooks, as
    edeliver 1.x printed them. `mix_host`: where the built project's Mix runs the Elixir
    `where: build` tasks, when not on the build host (a container build's image)."""
    hide = (redact or Redactor()).including(env)
    for spec in ordered(t.spec for t in tasks):
        task = next(t for t in tasks if t.name == spec.name)
        if spec.stage != stage or spec.optional:
            continue
        host = local if spec.where == "local" else build_host
        if task.module is not None and spec.where == "build":
            host = mix_host or build_host
        context = TaskContext(
            app=app, release="", environment="", stage=stage, node=None, first_deploy=False,
            assigns={}, env={**env, "APP": app, "STAGE": stage, "TASK": spec.name},
            _host=host, _loop=asyncio.get_running_loop(),
        )  # fmt: skip
        if task.run is not None:
            ok, said = await call_body(task.run, context, TaskThreads(1))
        elif task.module is not None:
            modules = [(task.module, spec.name, spec.critical)]
            how = vm_for(spec.where, stage, hot=False)
            ok, said = (await run_modules(modules, "run", context, how, None))[0]
        else:
            ok, said = command_outcome(await host.run_command(task.script or "", context.env))
        for line in status_lines(said):
            show(line)
        if not ok and spec.critical:
            raise TaskFailed(f"task {spec.name} failed at {stage}: {last_lines(hide(said))}")


def status_lines(output: str) -> list[str]:
    """The lines a legacy hook's `status "..."` printed, which edeliver 1.x showed as they are."""
    return [line for line in output.splitlines() if line.startswith(STATUS_PREFIX)]
