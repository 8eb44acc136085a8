"""How a task run ends, as (ok, what it said): a Python body run in a task thread, a script's
command result; and the tail of that output a failure's message quotes. Shared by the tasks of
a rollout (`task_runs.py`) and of a build (`build_tasks.py`)."""

from __future__ import annotations

import asyncio
import traceback

from edeliver.core.ports import CommandResult
from edeliver.core.usecases.task_context import TaskBody, TaskContext
from edeliver.core.usecases.task_threads import TaskThreads


async def call_body(body: TaskBody, context: TaskContext, threads: TaskThreads) -> tuple[bool, str]:
    """Run a Python task body in a task thread: (ok, what its commands said and any error)."""
    try:
        await threads.run(lambda: body(context))
    except asyncio.CancelledError:
        context.stop()
        raise
    except Exception as error:  # the user's code: any error fails the task, with its trace
        trace = "".join(traceback.format_exception_only(error)).strip()
        return False, "\n".join([*context._said, trace])
    return True, "\n".join(context._said)


def command_outcome(result: CommandResult) -> tuple[bool, str]:
    """A script's run: ok on exit 0; otherwise what it said, then its exit status."""
    said = result.output.strip()
    return result.status == 0, said if result.status == 0 else f"{said}\n(exit {result.status})"


def last_lines(output: str, lines: int = 5) -> str:
    """The last lines of a run's output on one line, for a failure's message."""
    return " | ".join(output.strip().splitlines()[-lines:]) or "no output"
