"""Elixir task modules under `.deliver/tasks/` (`.ex` files, `use Edeliver.Task, ...`): their
settings, read with the local `elixir` before anything runs (`elixir/task_settings.exs` parses
the files, compiles and runs nothing), and the protocol's source (`elixir/edeliver_task.ex`)
that every program running them starts with (core/usecases/elixir_tasks.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from edeliver.core.domain.tasks import INITIAL, TaskError, TaskSpec
from edeliver.core.usecases.elixir_tasks import BEFORE_UNPACK, ElixirModule
from edeliver.core.usecases.loaded_task import LoadedTask

ELIXIR_DIR = Path(__file__).with_name("elixir")
PROTOCOL_FILE = ELIXIR_DIR / "edeliver_task.ex"
SETTINGS_SCRIPT = ELIXIR_DIR / "task_settings.exs"
_SETTINGS_SECONDS = 120
_LISTS = ("optional", "environments", "requires")


def elixir_tasks(files: list[Path], root: Path, project: Path) -> list[LoadedTask]:
    """The tasks of these `.ex` files; TaskError naming the file and line of the first problem."""
    if not files:
        return []
    protocol = PROTOCOL_FILE.read_text(encoding="utf-8")
    shown = {_shown(path, project): path for path in files}
    found_fields = _settings(list(shown), project)
    found = [_module(fields, shown, root, protocol) for fields in found_fields]
    per_file = Counter(str(fields["file"]) for fields in found_fields)
    return [_named(task, per_file) for task in found]


def _shown(path: Path, project: Path) -> str:
    """A file as errors show it: relative to the project, as its authors know it."""
    try:
        return path.relative_to(project).as_posix()
    except ValueError:
        return str(path)


def _settings(files: list[str], project: Path) -> list[dict[str, Any]]:
    if shutil.which("elixir") is None:
        raise TaskError(
            f"{files[0]}: Elixir task modules need `elixir` on this machine to read their "
            "settings; it is not on PATH"
        )
    done = subprocess.run(
        ["elixir", str(SETTINGS_SCRIPT), str(PROTOCOL_FILE), *files],
        cwd=project, capture_output=True, text=True, timeout=_SETTINGS_SECONDS, check=False,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if errors := [line["error"] for line in lines if "error" in line]:
        raise TaskError(str(errors[0]))
    if done.returncode != 0:
        raise TaskError(f"{files[0]}: reading the Elixir tasks' settings failed: {done.stderr}")
    return lines


def _module(
    fields: dict[str, Any], shown: dict[str, Path], root: Path, protocol: str
) -> LoadedTask:
    file = str(fields["file"])
    source = f"{file}:{fields['line']}"
    options = dict(fields["options"])
    settings = _checked(options, source)
    spec = TaskSpec(name=_base(shown[file], root), source=source, **settings)
    if spec.where in ("node", "once") and spec.stage in BEFORE_UNPACK:
        raise TaskError(
            f"{source}: stage: a node task runs with the release being deployed; {spec.stage} "
            "comes before it is unpacked (post_extract_release_archive is the first)"
        )
    text = shown[file].read_text(encoding="utf-8")
    module = ElixirModule(file, text, str(fields["module"]), bool(fields["cleanup"]), protocol)
    return LoadedTask(spec, module=module)


def _checked(options: dict[str, Any], source: str) -> dict[str, Any]:
    """The `use` options as TaskSpec takes them; a wrong type names the option."""
    if "stage" not in options:
        raise TaskError(f"{source}: use Edeliver.Task: no `stage:` option")
    settings: dict[str, Any] = {"stage": _word(options, "stage", source)}
    if "where" in options:
        settings["where"] = _word(options, "where", source)
    if "critical" in options:
        settings["critical"] = _flag(options, "critical", source)
    for key in _LISTS:
        if key in options:
            settings[key] = _words(options, key, source)
    if "initial" in options and _flag(options, "initial", source):
        settings["optional"] = (*settings.get("optional", ()), INITIAL)
    return settings


def _word(options: dict[str, Any], key: str, source: str) -> str:
    value = options[key]
    if not isinstance(value, str):
        raise TaskError(f"{source}: {key}: expected an atom or a string, got {value!r}")
    return value


def _flag(options: dict[str, Any], key: str, source: str) -> bool:
    value = options[key]
    if not isinstance(value, bool):
        raise TaskError(f"{source}: {key}: expected true or false, got {value!r}")
    return value


def _words(options: dict[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = options[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TaskError(f"{source}: {key}: expected a list of atoms or strings, got {value!r}")
    return tuple(value)


def _base(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _named(task: LoadedTask, per_file: Counter[str]) -> LoadedTask:
    """Several modules in one file are named `file.Module`, as Python's `file.ClassName`."""
    module = task.module
    if module is None or per_file[module.file] == 1:
        return task
    return LoadedTask(replace(task.spec, name=f"{task.spec.name}.{module.module}"), module=module)
