"""Elixir task modules with the real `elixir` of this machine: their settings read from the
`use Edeliver.Task` options (errors naming file and line), and the protocol's runner: assigns
and `cmd`, several tasks in one VM, and each bad outcome of a task (a run/1 that returns
something else, a cleanup/1 that raises, a task that never returns, an assign JSON cannot hold).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edeliver.adapters.local.elixir_tasks import PROTOCOL_FILE
from edeliver.adapters.local.local_commands import LocalCommandHost
from edeliver.adapters.local.task_files import discover
from edeliver.core.domain.tasks import TaskError, ordered
from edeliver.core.usecases.elixir_tasks import ElixirModule, run_modules
from edeliver.core.usecases.task_context import TaskContext
from tests.support.faults_tasks import write_tasks

TWO_MODULES = """defmodule Deploy.Digest do
  use Edeliver.Task, stage: :pre_start_deployed_release, optional: [:assets], initial: true
  def run(ctx), do: ctx
end

defmodule Deploy.Migrate do
  use Edeliver.Task,
    stage: :post_extract_release_archive, where: :once, critical: false,
    environments: [:prod, "eu-prod"], requires: ["20_seed"]
  def run(ctx), do: ctx
  def cleanup(ctx), do: ctx
end
"""
SEED = """from edeliver import task

@task('post_extract_release_archive')
def seed(ctx):
    return ctx
"""


def test_the_use_options_are_the_settings_and_order_with_python_tasks(tmp_path: Path) -> None:
    """Two modules of one file are `file.Module`; `initial: true` is the initial tag; `requires`
    names a Python task, which then runs first."""
    write_tasks(tmp_path, {"10_deploy.ex": TWO_MODULES, "20_seed.py": SEED})
    found = {t.name: t for t in discover(tmp_path)}
    digest, migrate = found["10_deploy.Deploy.Digest"], found["10_deploy.Deploy.Migrate"]
    assert digest.spec.optional == ("assets", "initial") and digest.spec.where == "node"
    assert (migrate.spec.where, migrate.spec.critical) == ("once", False)
    assert migrate.spec.environments == ("prod", "eu-prod")
    assert migrate.module is not None and migrate.module.has_cleanup
    assert digest.module is not None and not digest.module.has_cleanup
    names = [t.name for t in ordered(t.spec for t in found.values())]
    assert names.index("20_seed") < names.index("10_deploy.Deploy.Migrate")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "defmodule A do\n  use Edeliver.Task, stage: @stage\nend\n",
            ".deliver/tasks/a.ex:2: use Edeliver.Task: option stage: is not a literal (@stage)",
        ),
        (
            "defmodule A do\n  use Edeliver.Task, stage: :post_erlang_update, colour: 1\nend\n",
            ".deliver/tasks/a.ex:2: use Edeliver.Task: unknown option colour:",
        ),
        ("defmodule A do\n  def run(ctx do\nend\n", ".deliver/tasks/a.ex:4: missing terminator"),
        (
            "defmodule A do\n  use Edeliver.Task, stage: :post_erlang_update\n"
            "  def run(ctx), do: nope(ctx)\nend\n",
            ".deliver/tasks/a.ex:3: undefined function nope/1",
        ),
        (
            "defmodule A do\n  use Edeliver.Task, stage: :post_start_deployd_release\nend\n",
            "did you mean 'post_start_deployed_release'?",
        ),
        (
            "defmodule A do\n  use Edeliver.Task, stage: :pre_extract_release_archive\nend\n",
            ".deliver/tasks/a.ex:1: stage: a node task runs with the release being deployed",
        ),
    ],
)
def test_bad_use_options_are_one_error_naming_the_file_and_line(
    tmp_path: Path, source: str, message: str
) -> None:
    """Non-literal or unknown options, syntax errors, a module that cannot compile, stage typos,
    a stage before the unpack."""
    write_tasks(tmp_path, {"a.ex": source})
    with pytest.raises(TaskError) as error:
        discover(tmp_path)
    assert message in str(error.value)


def run_here(tmp_path: Path, source: str, phase: str = "run", timeout: float = 30) -> Any:
    """Run every module of `source` as tasks, in one VM of the local `elixir`."""
    file = tmp_path / "tasks.ex"
    file.write_text(source)
    protocol = PROTOCOL_FILE.read_text()
    names = [line.split()[1] for line in source.splitlines() if line.startswith("defmodule")]
    modules = [(ElixirModule(str(file), source, n, True, protocol), n, True) for n in names]

    async def go() -> tuple[list[tuple[bool, str]], dict[str, Any]]:
        context = TaskContext(
            app="hello", release="1.0.0", environment="prod", stage="post_erlang_update",
            node=None, first_deploy=False, assigns={"given": [1, "two"]}, env={"WHO": "there"},
            _host=LocalCommandHost(tmp_path), _loop=asyncio.get_running_loop(),
        )  # fmt: skip
        ran = await run_modules(modules, phase, context, "local", timeout)
        return ran, context.assigns

    return asyncio.run(go())


def test_tasks_in_one_vm_pass_assigns_along_and_cmd_runs_with_the_env(tmp_path: Path) -> None:
    """The second task sees the first's assign; `cmd` runs with the context's env, TASK
    naming the task that runs it."""
    ran, assigns = run_here(
        tmp_path,
        "defmodule A do\n  use Edeliver.Task, stage: :post_erlang_update\n"
        '  def run(ctx), do: ctx |> cmd("echo hi $WHO from $TASK", into: :said) |> vm()\n'
        "  defp vm(ctx), do: assign(ctx, :vm, System.pid())\n"
        "end\n"
        "defmodule B do\n  use Edeliver.Task, stage: :post_erlang_update\n"
        "  def run(ctx) do\n"
        '    assign(ctx, :both, "#{ctx.assigns.said} #{ctx.assigns.vm} #{System.pid()}")\n'
        "  end\n"
        "end\n",
    )
    assert ran == [(True, "hi there from A"), (True, "")]
    vm = assigns["vm"]
    assert assigns == {
        "given": [1, "two"],
        "said": "hi there from A",
        "vm": vm,
        "both": f"hi there from A {vm} {vm}",
    }


@pytest.mark.parametrize(
    ("body", "phase", "said"),
    [
        ("def run(_ctx), do: :ok", "run", "A.run/1 returned :ok, not the context"),
        ('def cleanup(_ctx), do: raise("cannot undo")', "cleanup", "** (RuntimeError) cannot undo"),
        ("def run(ctx), do: assign(ctx, :me, self())", "run", "assign :me is not JSON-safe"),
        (
            "def run(_ctx), do: Process.sleep(:infinity)",
            "run",
            "timed out after 1s and was stopped",
        ),
        ('def run(ctx), do: cmd(ctx, "exit 3")', "run", "`exit 3` exited 3"),
    ],
)
def test_each_bad_outcome_of_a_task_is_a_failure_that_says_why(
    tmp_path: Path, body: str, phase: str, said: str
) -> None:
    """A run/1 returning something else, a cleanup/1 raising, an assign JSON cannot hold, a
    task that never returns (its limit, here 1 s), a failing `cmd`: failed, with the reason."""
    source = f"defmodule A do\n  use Edeliver.Task, stage: :post_erlang_update\n  {body}\nend\n"
    ran, _ = run_here(tmp_path, source, phase=phase, timeout=1)
    assert len(ran) == 1 and not ran[0][0]
    assert said in ran[0][1]
