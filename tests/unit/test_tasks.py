"""Tasks: settings, order by name or dependency graph, ExUnit-like selection, discovery."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edeliver.adapters.local.task_files import discover
from edeliver.cli.main import Runtime, app
from edeliver.core.domain.tasks import (
    LEGACY_STAGES,
    Selection,
    TaskError,
    TaskSpec,
    ordered,
    plan_by_stage,
    skip_reason,
    unmatched_tags,
)


def spec(name: str, *, stage: str = "post_extract_release_archive", **settings: object) -> TaskSpec:
    return TaskSpec(name=name, stage=stage, source=f".deliver/tasks/{name}.py", **settings)  # type: ignore[arg-type]


def test_every_edeliver_1_hook_is_a_stage_in_its_firing_order() -> None:
    assert LEGACY_STAGES[0] == "pre_init_app_remotely"
    assert LEGACY_STAGES.index("pre_extract_release_archive") < LEGACY_STAGES.index(
        "pre_start_deployed_release"
    )
    assert len(LEGACY_STAGES) == 24


def test_an_unknown_stage_is_refused_with_a_suggestion() -> None:
    expected = r"migrate.py: stage: unknown stage 'post_extract_release'; did you mean "
    with pytest.raises(TaskError, match=expected + r"'post_extract_release_archive'\?"):
        spec("migrate", stage="post_extract_release")


def test_tasks_run_in_name_order_with_directories_as_groups() -> None:
    tasks = [spec("20_deploy/migrate"), spec("10_assets/digest"), spec("10_assets/compile")]
    assert [t.name for t in ordered(tasks)] == [
        "10_assets/compile",
        "10_assets/digest",
        "20_deploy/migrate",
    ]


def test_requires_wins_over_names() -> None:
    tasks = [spec("a_first", requires=("z_last",)), spec("m_middle"), spec("z_last")]
    assert [t.name for t in ordered(tasks)] == ["z_last", "a_first", "m_middle"]


def test_a_cycle_is_an_error_naming_it() -> None:
    tasks = [spec("a", requires=("b",)), spec("b", requires=("c",)), spec("c", requires=("a",))]
    with pytest.raises(TaskError, match="cycle: a → b → c → a"):
        ordered(tasks)


def test_a_missing_requirement_is_an_error_naming_it() -> None:
    with pytest.raises(TaskError, match=r"a.py: requires: 'nope' is no task"):
        ordered([spec("a", requires=("nope",))])


@pytest.mark.parametrize(
    ("optional", "selection", "first", "runs"),
    [
        ((), Selection(), False, True),
        (("initial",), Selection(), False, False),
        (("initial",), Selection(), True, True),
        (("seed",), Selection(include=frozenset({"seed"})), False, True),
        (("seed",), Selection(), False, False),
        ((), Selection(only=frozenset({"seed"})), False, False),
        (("seed",), Selection(only=frozenset({"seed"})), False, True),
        (("initial",), Selection(exclude=frozenset({"initial"})), True, False),
    ],
)
def test_selection_works_like_exunit_tags(
    optional: tuple[str, ...], selection: Selection, first: bool, runs: bool
) -> None:
    """Optional tasks run only when selected; `initial` is selected on a first deploy."""
    assert (skip_reason(spec("t", optional=optional), "prod", selection, first) is None) is runs


def test_environment_filters_and_unmatched_tags() -> None:
    only_prod = spec("t", environments=("prod",))
    assert skip_reason(only_prod, "staging", Selection(), False) == "only for environments prod"
    assert unmatched_tags(
        [spec("t", optional=("seed",))], Selection(include=frozenset({"sede"}))
    ) == ["sede"]


def test_plan_groups_tasks_by_stage_in_firing_order() -> None:
    tasks = [
        spec("b", stage="post_start_deployed_release"),
        spec("a", stage="pre_extract_release_archive"),
    ]
    assert [stage for stage, _ in plan_by_stage(tasks, "prod", Selection(), False)] == [
        "pre_extract_release_archive",
        "post_start_deployed_release",
    ]


def write(project: Path, relative: str, text: str) -> Path:
    path = project / ".deliver/tasks" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_python_shell_and_elixir_task_files_are_discovered(tmp_path: Path) -> None:
    write(
        tmp_path,
        "20_deploy/migrate.exs",
        "# stage: post_extract_release_archive\n# where: once\nRepo.migrate()\n",
    )
    write(
        tmp_path,
        "10_assets/warm.sh",
        "#!/bin/sh\n# stage: post_start_deployed_release\n# optional: initial, seed\n"
        "# critical: false\ncurl -s localhost\n",
    )
    write(
        tmp_path,
        "30_lb/drain.py",
        "from edeliver import task\n\n"
        "@task('pre_start_deployed_release', where='local')\ndef drain(ctx):\n    return ctx\n",
    )
    found = {t.spec.name: t for t in discover(tmp_path)}
    assert found["20_deploy/migrate"].spec.where == "once" and found["20_deploy/migrate"].elixir
    warm = found["10_assets/warm"].spec
    assert warm.optional == ("initial", "seed") and warm.critical is False
    assert found["30_lb/drain"].run is not None and found["30_lb/drain"].spec.where == "local"


def test_a_task_module_that_fails_to_import_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.py", "x = 1\nraise RuntimeError('boom')\n")
    with pytest.raises(TaskError, match=rf"{path}:2: RuntimeError: boom"):
        discover(tmp_path)
    write(tmp_path, "bad.py", "def broken(:\n")
    with pytest.raises(TaskError, match=rf"{path}:1: "):
        discover(tmp_path)


def test_a_script_header_with_an_unknown_setting_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "x.sh", "# stage: pre_rollback\n# critcal: false\n")
    with pytest.raises(TaskError, match=rf"{path}:2: unknown task setting 'critcal'"):
        discover(tmp_path)


def test_the_tasks_command_shows_order_and_skip_reasons(tmp_path: Path) -> None:
    (tmp_path / ".deliver").mkdir()
    (tmp_path / ".deliver/edeliver.toml").write_text(
        '[nodes.a]\nhost = "h"\npath = "/srv"\n[environments.prod]\nnodes = ["a"]\n'
    )
    write(tmp_path, "20_deploy/migrate.exs", "# stage: post_extract_release_archive\n")
    write(tmp_path, "10_seed.sh", "# stage: post_extract_release_archive\n# optional: seed\n")
    result = CliRunner().invoke(
        app, ["tasks", "prod", "--include", "sede"], obj=Runtime(project=tmp_path)
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "post_extract_release_archive"
    assert "skip  10_seed" in lines[1] and "--include seed" in lines[1]
    assert "run   20_deploy/migrate" in lines[2]
    assert "no task is tagged 'sede'" in result.stderr


def test_the_firing_order_has_every_stage_once() -> None:
    from edeliver.core.domain.tasks import FIRING_ORDER, STAGES

    assert sorted(FIRING_ORDER) == sorted(STAGES) and len(FIRING_ORDER) == len(STAGES)
    assert FIRING_ORDER.index("pre_erlang_update") < FIRING_ORDER.index(
        "pre_extract_release_archive"
    )


@pytest.mark.parametrize("mode", ["release", "upgrade"])
def test_the_firing_order_lists_the_step_stages_as_each_mode_fires_them(mode: str) -> None:
    """In upgrade mode post_start_deployed_release comes after the upgrade's two stages."""
    from edeliver.core.domain.tasks import FIRING_ORDER, STEP_STAGES

    steps = ("prepare", "install", "activate", "verify")
    fired = [s for step in steps for ss in STEP_STAGES[mode].get(step, ((), ())) for s in ss]
    assert fired == [s for s in FIRING_ORDER if s in fired]
    assert fired[-1] == "post_start_deployed_release"


def test_an_exs_task_before_the_unpack_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "m.exs", "# stage: pre_extract_release_archive\nIO.puts(1)\n")
    with pytest.raises(TaskError, match=rf"{path}: stage: an .exs task is evaluated by the"):
        discover(tmp_path)


def test_a_build_stage_takes_only_build_or_local_tasks() -> None:
    with pytest.raises(TaskError, match="where: 'node' does not fit stage 'pre_erlang_clean"):
        spec("x", stage="pre_erlang_clean_compile")
    assert spec("y", stage="pre_erlang_clean_compile", where="build").where == "build"


def test_a_task_can_be_a_class_with_settings_run_and_cleanup(tmp_path: Path) -> None:
    write(
        tmp_path,
        "20_deploy/migrate.py",
        "from edeliver import Task\n\n"
        "class Migrate(Task):\n"
        "    stage = 'post_extract_release_archive'\n"
        "    where = 'once'\n"
        "    optional = ('db',)\n\n"
        "    def run(self, ctx):\n        return ctx.assign(migrated=True)\n\n"
        "    def cleanup(self, ctx):\n        return ctx.assign(migrated=False)\n\n"
        "class Warm(Task):\n"
        "    stage = 'post_start_deployed_release'\n"
        "    critical = False\n",
    )
    found = {t.spec.name: t for t in discover(tmp_path)}
    assert set(found) == {"20_deploy/migrate.Migrate", "20_deploy/migrate.Warm"}
    migrate, warm = found["20_deploy/migrate.Migrate"], found["20_deploy/migrate.Warm"]
    assert (migrate.spec.stage, migrate.spec.where, migrate.spec.optional) == (
        "post_extract_release_archive", "once", ("db",),
    )  # fmt: skip
    assert migrate.cleanup is not None and warm.cleanup is None
    assert warm.spec.critical is False and warm.spec.where == "node"


def test_a_task_class_without_a_stage_is_refused_naming_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "x.py",
        "from edeliver import Task\n\nclass Nothing(Task):\n    pass\n",
    )
    with pytest.raises(TaskError, match=rf"{path}: Nothing: no `stage"):
        discover(tmp_path)
