"""Finds the tasks under `.deliver/tasks/`: Elixir modules, Python modules, shell and Elixir
script files.

Elixir modules (`.ex`) say `use Edeliver.Task, stage: ...` (adapters/local/elixir_tasks.py). Python
files declare tasks with `@task(...)` from `edeliver`; `.sh` and `.exs` files carry
their settings in a header comment:

    # stage: post_extract_release_archive
    # where: node
    # optional: initial
    # critical: false
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from edeliver.adapters.local.elixir_tasks import elixir_tasks
from edeliver.core.domain.tasks import Task, TaskError, TaskSpec
from edeliver.core.usecases.elixir_tasks import BEFORE_UNPACK
from edeliver.core.usecases.loaded_task import LoadedTask

TASKS_DIR = Path(".deliver/tasks")
_LIST_SETTINGS = {"optional", "environments", "requires"}
_HEADER_KEYS = {"stage", "where", "critical", *_LIST_SETTINGS}


def discover(project: Path) -> list[LoadedTask]:
    """Every task under the project's `.deliver/tasks/`, in no particular order."""
    root = project / TASKS_DIR
    found: list[LoadedTask] = []
    modules: list[Path] = []
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        if path.suffix == ".py" and not path.name.startswith("_"):
            found += _python_tasks(path, root)
        elif path.suffix in (".sh", ".exs"):
            found.append(_script_task(path, root))
        elif path.suffix == ".ex":
            modules.append(path)
    return found + elixir_tasks(modules, root, project)


def _name(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _python_tasks(path: Path, root: Path) -> list[LoadedTask]:
    """The module's `@task` functions and `Task` subclasses, each one task."""
    module = _import(path, root)
    found = [
        (attribute, value)
        for attribute, value in vars(module).items()
        if (callable(value) and hasattr(value, "__edeliver_task__")) or _task_class(value, module)
    ]
    base = _name(path, root)
    tasks = []
    for attribute, value in found:
        name = base if len(found) == 1 else f"{base}.{attribute}"
        tasks.append(_loaded(value, name, str(path)))
    return tasks


def _task_class(value: object, module: Any) -> bool:
    """A Task subclass defined in the module itself (not one it imported)."""
    return (
        isinstance(value, type)
        and issubclass(value, Task)
        and value is not Task
        and value.__module__ == module.__name__
    )


def _loaded(value: Any, name: str, source: str) -> LoadedTask:
    if isinstance(value, type) and issubclass(value, Task):
        instance = value()
        spec = TaskSpec(name=name, source=source, **value.settings(source))
        cleanup = instance.cleanup if value.has_cleanup() else None
        return LoadedTask(spec, run=instance.run, cleanup=cleanup)
    settings = dict(value.__edeliver_task__)
    cleanup = settings.pop("cleanup")
    return LoadedTask(TaskSpec(name=name, source=source, **settings), run=value, cleanup=cleanup)


def _import(path: Path, root: Path) -> Any:
    """Import a task module; a failure names the file and the line, and nothing is deployed."""
    module_name = "edeliver_tasks." + _name(path, root).replace("/", ".")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise TaskError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise TaskError(f"{path}:{error.lineno}: {error.msg}") from None
    except Exception as error:
        line = _line_in(path, error)
        raise TaskError(f"{path}:{line}: {type(error).__name__}: {error}") from None
    sys.modules.pop(module_name, None)
    return module


def _line_in(path: Path, error: BaseException) -> int | str:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename) == path]
    if not frames:
        return "?"
    return frames[-1].lineno or "?"


def _script_task(path: Path, root: Path) -> LoadedTask:
    text = path.read_text(encoding="utf-8")
    settings = _header(path, text)
    if "stage" not in settings:
        raise TaskError(f"{path}: no `# stage: …` line in its header comment")
    spec = TaskSpec(name=_name(path, root), source=str(path), **settings)
    if path.suffix == ".sh":
        return LoadedTask(spec, script=text)
    if spec.where not in ("node", "once"):
        raise TaskError(f"{path}: where: an .exs task is evaluated on a node: node | once")
    if spec.stage in BEFORE_UNPACK:
        raise TaskError(
            f"{path}: stage: an .exs task is evaluated by the unpacked release; "
            f"{spec.stage} comes before the unpack (post_extract_release_archive is the first)"
        )
    return LoadedTask(spec, elixir=text)


def _header(path: Path, text: str) -> dict[str, Any]:
    """`# key: value` lines at the top of a script, up to the first line that is not one."""
    settings: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#!") or not line.strip():
            continue
        if not line.startswith("#") or ":" not in line:
            break
        key, _, value = line.lstrip("#").partition(":")
        key, value = key.strip(), value.strip()
        if key not in _HEADER_KEYS:
            raise TaskError(f"{path}:{number}: unknown task setting {key!r}")
        settings[key] = _value(key, value, path, number)
    return settings


def _value(key: str, value: str, path: Path, number: int) -> Any:
    if key in _LIST_SETTINGS:
        return tuple(v for v in value.replace(",", " ").split() if v)
    if key == "critical":
        if value not in ("true", "false"):
            raise TaskError(f"{path}:{number}: critical: expected true or false, got {value!r}")
        return value == "true"
    return value
