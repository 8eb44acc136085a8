"""Elixir task modules (`use Edeliver.Task`, DESIGN §7) as programs to run: pure text in, text
out. The adapters read the modules' settings and the protocol's source; the task runner hands
the script made here to a node or to this machine, and reads the results back from its output.

One program runs the tasks of one stage of one node in one VM: the protocol (`Edeliver.Task`),
the task files compiled with their own names (so errors show file and line), then
`Edeliver.Task.Runner.main/1` with the context as an Elixir literal. The VM is the release's
(`bin/<app> eval` before the start, `bin/<app> rpc` into the running VM after it or on a node
upgraded hot), the local `elixir` (`where: local`) or the built project's `mix run` (`where:
build`). Each task reached prints one result line: ok or not, its output, the assigns after it.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from edeliver.core.domain.tasks import POST_ROLLBACK, PRE_ROLLBACK
from edeliver.core.usecases.task_context import TaskContext

RESULT_MARKER: Final = "EDELIVER-TASK-RESULT "
# Stages where the release's VM is up, so tasks run inside it (`rpc`); before them, a VM of
# the unpacked release runs them (`eval`). A node upgraded hot has no release dir of the new
# version to eval from: on the hot route every node stage goes by `rpc`.
RUNNING_STAGES: Final = frozenset(
    {
        "post_start_deployed_release", "post_upgrade_release", "post_erlang_deployed_update",
        "post_erlang_update", PRE_ROLLBACK, POST_ROLLBACK,
    }
)  # fmt: skip
# Stages before the release is unpacked on the node: nothing there to run a node task with.
BEFORE_UNPACK: Final = ("pre_erlang_update", "pre_extract_release_archive")


@dataclass(frozen=True)
class ElixirModule:
    """One task module: the file it is in (as shown in errors), that file's text, its name,
    whether it defines `cleanup/1`, and the protocol's source the program starts with."""

    file: str
    source: str
    module: str
    has_cleanup: bool
    protocol: str = field(repr=False)


@dataclass(frozen=True)
class ElixirResult:
    """How one task of a program ended: its output and the assigns it left (JSON values)."""

    task: str
    ok: bool
    output: str
    assigns: dict[str, Any]


def vm_for(where: str, stage: str, hot: bool) -> str:
    """How a task's VM is reached (launch_script): `local` and `build` tasks by their own VM,
    node tasks by the release's, a new one (`eval`) or the running one (`rpc`); `hot`: the node
    takes the hot-upgrade route."""
    if where in ("local", "build"):
        return where
    return "rpc" if hot or stage in RUNNING_STAGES else "eval"


def program(
    tasks: Sequence[tuple[ElixirModule, str, bool]],
    phase: str,
    context: Mapping[str, Any],
    timeout: float | None,
) -> str:
    """The Elixir program running `tasks` (module, task name, critical) in order; `phase` is
    `run` or `cleanup`; `context` the fields of `Edeliver.Task.Context`."""
    files: dict[str, str] = {}
    for module, _, _ in tasks:
        files.setdefault(module.file, module.source)
    limit = ":infinity" if timeout is None else str(max(1, math.ceil(timeout * 1000)))
    compiled = ", ".join(f"{{{elixir_term(f)}, {elixir_term(s)}}}" for f, s in files.items())
    calls = ", ".join(
        f"{{{module.module}, {elixir_term(name)}, {elixir_term(critical)}}}"
        for module, name, critical in tasks
    )
    return (
        f"{tasks[0][0].protocol}\n"
        "Edeliver.Task.Runner.main(%{\n"
        f"  files: [{compiled}],\n"
        f"  tasks: [{calls}],\n  phase: :{phase},\n  timeout: {limit},\n"
        f"  context: %{{{', '.join(f'{k}: {elixir_term(v)}' for k, v in context.items())}}}\n"
        "})\n"
    )


PROGRAM_VARIABLE: Final = "EDELIVER_TASK_PROGRAM"


def launch_script(how: str, app: str = "", version: str = "") -> str:
    """A `sh` script that writes the program (given in $EDELIVER_TASK_PROGRAM: never in an
    argument, as the context may hold secrets) to a private temporary file and runs it: `eval`
    with releases/<version> (from the deploy path), `rpc` into the VM `current` runs, `local`
    with `elixir`, `build` with `mix run`."""
    run = {
        "eval": f"cd releases/{shlex.quote(version)} && bin/{shlex.quote(app)} eval {_READ_ONCE}",
        "rpc": f"cd current && bin/{shlex.quote(app)} rpc {_READ_ONCE}",
        "local": 'elixir "$f"',
        "build": 'mix run --no-start "$f"',
    }[how]
    return (
        "f=$(mktemp /tmp/edeliver-task.XXXXXX) || exit 97\n"
        "trap 'rm -f \"$f\"' EXIT\n"
        f'printf "%s" "${PROGRAM_VARIABLE}" > "$f" || exit 97\nunset {PROGRAM_VARIABLE}\n'
        f"{run} 2>&1\n"
    )


# The release's VM deletes the program once read: a script killed with its step leaves no copy
# of the context behind. (mktemp's name has no character to quote in an Elixir string.)
_READ_ONCE: Final = '"c = File.read!(\\"$f\\"); File.rm(\\"$f\\"); Code.eval_string(c)"'


def results(output: str) -> tuple[str | None, list[ElixirResult], str]:
    """From a program's output: the compile error (if the files did not compile), the tasks'
    results, and what it printed besides (a VM that did not start says why there)."""
    compile_error, found, other = None, [], []
    for line in output.splitlines():
        if not line.startswith(RESULT_MARKER):
            other.append(line)
            continue
        fields = json.loads(line[len(RESULT_MARKER) :])
        if "compile_error" in fields:
            compile_error = str(fields["compile_error"])
            continue
        found.append(
            ElixirResult(
                str(fields["task"]), bool(fields["ok"]), str(fields["output"]),
                dict(fields["assigns"]),
            )
        )  # fmt: skip
    return compile_error, found, "\n".join(other).strip()


def elixir_term(value: Any) -> str:
    """A JSON-like value as an Elixir literal: strings escaped (interpolation included), dicts
    as maps with string keys."""
    if value is None or isinstance(value, bool | int | float):
        return _scalar(value)
    if isinstance(value, str):
        return '"' + "".join(_ESCAPES.get(c, _escaped(c)) for c in value) + '"'
    if isinstance(value, Mapping):
        pairs = (f"{elixir_term(str(k))} => {elixir_term(v)}" for k, v in value.items())
        return "%{" + ", ".join(pairs) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(elixir_term(v) for v in value) + "]"
    return elixir_term(str(value))


def _scalar(value: bool | float | None) -> str:
    if value is None or isinstance(value, bool):
        return {None: "nil", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "nil"
    # Elixir wants a digit after the point: `1.0e-5`, not Python's `1e-05`.
    mantissa, e, exponent = repr(value).partition("e")
    mantissa = mantissa if "." in mantissa else mantissa + ".0"
    return mantissa + (f"e{int(exponent)}" if e else "")


_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "#": "\\#", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escaped(char: str) -> str:
    return f"\\x{ord(char):02X}" if ord(char) < 0x20 or ord(char) == 0x7F else char


async def run_modules(
    tasks: Sequence[tuple[ElixirModule, str, bool]],
    phase: str,
    context: TaskContext,
    how: str,
    timeout: float | None,
) -> list[tuple[bool, str]]:
    """Run the tasks in one VM where `context` runs commands; (ok, output) for each task
    reached, in order: a critical failure, a module that does not compile or a VM that died
    ends the list with a failure. `context.assigns` ends as the last task left them."""
    fields = {
        "app": context.app, "release": context.release, "environment": context.environment,
        "stage": context.stage, "node": _node_fields(context), "first_deploy": context.first_deploy,
        "assigns": context.assigns, "env": context.env,
        "dir": context.node.path if context.node is not None and how in ("eval", "rpc") else None,
    }  # fmt: skip
    code = program(tasks, phase, fields, timeout)
    script = launch_script(how, context.app, context.release)
    ended = await context._host.run_command(script, {**context.env, PROGRAM_VARIABLE: code})
    compile_error, found, other = results(ended.output)
    context._said.append(other)
    if compile_error is not None:
        return [(False, f"{compile_error}\n(the task modules did not compile; no task ran)")]
    ran = [(r.ok, r.output.strip()) for r in found]
    for result in found:
        if result.ok:
            context.assigns = dict(result.assigns)
    if len(ran) < len(tasks) and (not found or found[-1].ok or not tasks[len(ran) - 1][2]):
        ran.append((False, f"{other}\n(the VM ended before this task ended: exit {ended.status})"))
    return ran


def _node_fields(context: TaskContext) -> dict[str, Any] | None:
    node = context.node
    if node is None:
        return None
    return {
        "name": node.name, "host": node.host, "port": node.port, "user": node.user,
        "path": node.path, "labels": list(node.labels),
    }  # fmt: skip
