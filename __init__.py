"""Edeliver 2.0: build Erlang/Elixir releases and roll them out to many nodes over SSH.

What a project's Python tasks import (`from edeliver import task, Task`, docs/tasks.md) is
named here, apart from where the code lives, so that moving a module never breaks a task file.
"""

from edeliver.core.domain.tasks import Task, task

__all__ = ["Task", "task"]
