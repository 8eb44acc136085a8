"""A task as loaded from the project: its settings and its body. Apart from the running of
tasks (task_runs.py, on the event-sourced deployment), so that listing and planning them
(`tasks`, `plan`) loads no event store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edeliver.core.domain.tasks import TaskSpec

if TYPE_CHECKING:
    from edeliver.core.usecases.elixir_tasks import ElixirModule
    from edeliver.core.usecases.task_context import TaskBody


@dataclass(frozen=True)
class LoadedTask:
    """A task's settings and its body: a Python callable, a shell script or Elixir code."""

    spec: TaskSpec
    run: TaskBody | None = None
    cleanup: TaskBody | None = None
    script: str | None = None  # run by `sh` where the task runs
    elixir: str | None = None  # evaluated by the release being deployed, on the node
    module: ElixirModule | None = None  # `use Edeliver.Task`: run in a VM with its neighbours

    @property
    def name(self) -> str:
        return self.spec.name
