"""Deploy and rollback tasks (DESIGN §7): their settings, order and selection, as pure functions.

A task is user code run at a stage. This module only knows tasks as `TaskSpec`s: where they come
from (Python, shell or Elixir files under `.deliver/tasks/`) is the adapters' business, running
them is the orchestrator's. Order: by name (directories are groups, `10_assets/` before
`20_deploy/`), unless `requires` draws a dependency graph, which wins. Selection is ExUnit's:
optional tasks carry tags and run only when selected; `initial` is selected on a node's first
deploy.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from edeliver.core.domain.errors import UsageError

# edeliver 1.x's hooks in firing order (reference/edeliver1.md §5), then the new stages.
LEGACY_STAGES: Final = (
    "pre_init_app_remotely", "post_init_app_remotely", "pre_git_push", "post_git_push",
    "pre_git_submodules", "post_git_submodules",
    "pre_erlang_get_and_update_deps", "post_erlang_get_and_update_deps",
    "pre_erlang_clean_compile", "post_erlang_clean_compile",
    "pre_erlang_generate_release", "post_erlang_generate_release",
    "pre_relx_generate_relup", "post_relx_generate_relup",
    "pre_extract_release_archive", "post_extract_release_archive",
    "pre_start_deployed_release", "post_start_deployed_release",
    "pre_upgrade_release", "post_upgrade_release",
    "pre_erlang_update", "post_erlang_deployed_update", "post_erlang_update", "pre_edit_relup",
)  # fmt: skip
STAGES: Final = (*LEGACY_STAGES, "pre_rollback", "post_rollback")
WHERE: Final = ("node", "once", "build", "local")
INITIAL: Final = "initial"

# Where each stage fires. Build stages: during a build, on the build host. Step stages: before
# or after one of a node's steps, per node (edeliver 1.x fired them around the same commands, for
# all hosts at once); post_start_deployed_release waits for the health check, so its tasks find
# the release up. In upgrade mode it fires too, after post_upgrade_release, whatever route the
# node took: "the new code runs" is one stage for a task author who does not know the route.
# Rollout stages: once around a whole rollout (edeliver 1.x's `update`). Rollback stages: around
# a node's fallback rollback, the cleanups of its tasks between them.
BUILD_STAGES: Final = (*LEGACY_STAGES[:14], "pre_edit_relup")
STEP_STAGES: Final[dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]]] = {
    # mode -> step -> (stages before it, stages after it), each in firing order
    "release": {
        "install": (("pre_extract_release_archive",), ("post_extract_release_archive",)),
        "activate": (("pre_start_deployed_release",), ()),
        "verify": ((), ("post_start_deployed_release",)),
    },
    "upgrade": {
        "activate": (("pre_upgrade_release",), ()),
        "verify": ((), ("post_upgrade_release", "post_start_deployed_release")),
    },
}
# The step stages in one order each mode's firing follows (the upgrade stages never fire in
# release mode, so they sit between the start's two): the order `plan` and `tasks` list them in.
STEP_STAGE_ORDER: Final = (
    "pre_extract_release_archive", "post_extract_release_archive", "pre_start_deployed_release",
    "pre_upgrade_release", "post_upgrade_release", "post_start_deployed_release",
)  # fmt: skip
BEFORE_ROLLOUT: Final = ("pre_erlang_update",)
AFTER_ROLLOUT: Final = ("post_erlang_deployed_update", "post_erlang_update")
PRE_ROLLBACK, POST_ROLLBACK = "pre_rollback", "post_rollback"
# The stages in the order a build and then a deployment fire them.
FIRING_ORDER: Final = (
    *BUILD_STAGES,
    *BEFORE_ROLLOUT,
    *STEP_STAGE_ORDER,
    *AFTER_ROLLOUT,
    PRE_ROLLBACK,
    POST_ROLLBACK,
)
OUTPUT_LIMIT: Final = 4000  # characters of a task's output kept in its event: the tail


class TaskError(UsageError):
    """A task file or the set of tasks is unusable; the message names the file or the tasks."""


class Task:
    """A task as a class, for tasks with state or helpers; the settings are class attributes:

        class Migrate(Task):
            stage = "post_extract_release_archive"
            where = "once"

            def run(self, ctx):
                ctx.run("bin/hello eval 'Hello.Release.migrate()'")
                return ctx

    Override `cleanup(ctx)` to undo `run` when the node is rolled back.
    """

    stage: ClassVar[str]
    where: ClassVar[str] = "node"
    optional: ClassVar[Sequence[str]] = ()
    critical: ClassVar[bool] = True
    environments: ClassVar[Sequence[str]] = ()
    requires: ClassVar[Sequence[str]] = ()

    def run(self, ctx: Any) -> Any:
        return ctx

    def cleanup(self, ctx: Any) -> Any:
        return ctx

    @classmethod
    def settings(cls, source: str) -> dict[str, Any]:
        """The settings as `TaskSpec` takes them; a missing stage names the class."""
        if not isinstance(getattr(cls, "stage", None), str):
            raise TaskError(f'{source}: {cls.__name__}: no `stage = "…"` class attribute')
        return {
            "stage": cls.stage, "where": cls.where, "optional": tuple(cls.optional),
            "critical": cls.critical, "environments": tuple(cls.environments),
            "requires": tuple(cls.requires),
        }  # fmt: skip

    @classmethod
    def has_cleanup(cls) -> bool:
        return cls.cleanup is not Task.cleanup


def task(
    stage: str,
    *,
    where: str = "node",
    optional: Sequence[str] = (),
    critical: bool = True,
    environments: Sequence[str] = (),
    requires: Sequence[str] = (),
    cleanup: Callable[[Any], Any] | None = None,
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Mark a function `run(ctx) -> ctx` in a `.deliver/tasks/*.py` file as a task."""

    def mark(run: Callable[[Any], Any]) -> Callable[[Any], Any]:
        run.__edeliver_task__ = {  # type: ignore[attr-defined]
            "stage": stage, "where": where, "optional": tuple(optional), "critical": critical,
            "environments": tuple(environments), "requires": tuple(requires), "cleanup": cleanup,
        }  # fmt: skip
        return run

    return mark


@dataclass(frozen=True)
class TaskSpec:
    """One task's settings; `name` is its path under `.deliver/tasks/` without the suffix."""

    name: str
    stage: str
    source: str
    where: str = "node"
    optional: tuple[str, ...] = ()
    critical: bool = True
    environments: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            near = difflib.get_close_matches(self.stage, STAGES, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise TaskError(f"{self.source}: stage: unknown stage {self.stage!r}{hint}")
        if self.where not in WHERE:
            raise TaskError(
                f"{self.source}: where: expected one of {' | '.join(WHERE)}, got {self.where!r}"
            )
        fits = ("build", "local") if self.stage in BUILD_STAGES else ("node", "once", "local")
        if self.where not in fits:
            raise TaskError(
                f"{self.source}: where: {self.where!r} does not fit stage {self.stage!r}; "
                f"it takes {' | '.join(fits)}"
            )


@dataclass(frozen=True)
class Selection:
    """`--include`, `--exclude` and `--only` tags, as ExUnit takes them."""

    include: frozenset[str] = field(default_factory=frozenset)
    exclude: frozenset[str] = field(default_factory=frozenset)
    only: frozenset[str] = field(default_factory=frozenset)


def ordered(tasks: Iterable[TaskSpec]) -> list[TaskSpec]:
    """Name order, unless `requires` says otherwise; a cycle or a missing task is an error."""
    by_name = {t.name: t for t in sorted(tasks, key=lambda t: t.name)}
    edges = {
        name: [_resolve(spec, r, by_name) for r in spec.requires] for name, spec in by_name.items()
    }
    done: list[str] = []
    for name in by_name:
        _visit(name, edges, done, [])
    return [by_name[name] for name in done]


def _resolve(spec: TaskSpec, required: str, by_name: dict[str, TaskSpec]) -> str:
    """A requirement names a task by its full name or, when unambiguous, its file name."""
    if required in by_name:
        return required
    matches = [n for n in by_name if n.rsplit("/", 1)[-1] == required]
    if len(matches) == 1:
        return matches[0]
    problem = "matches several tasks: " + ", ".join(matches) if matches else "is no task"
    raise TaskError(f"{spec.source}: requires: {required!r} {problem}")


def _visit(name: str, edges: dict[str, list[str]], done: list[str], path: list[str]) -> None:
    """Depth-first: a task comes after what it requires, and otherwise keeps its name order."""
    if name in done:
        return
    if name in path:
        cycle = [*path[path.index(name) :], name]
        raise TaskError(f"tasks require each other in a cycle: {' → '.join(cycle)}")
    for required in edges[name]:
        _visit(required, edges, done, [*path, name])
    done.append(name)


def skip_reason(
    spec: TaskSpec, environment: str, selection: Selection, first_deploy: bool
) -> str | None:
    """Why this task does not run here, or None when it runs."""
    if spec.environments and environment not in spec.environments:
        return f"only for environments {', '.join(spec.environments)}"
    tags = set(spec.optional)
    if selection.only:
        return (
            None
            if tags & selection.only
            else f"not tagged {' or '.join(sorted(selection.only))} (--only)"
        )
    if excluded := tags & selection.exclude:
        return f"excluded by --exclude {', '.join(sorted(excluded))}"
    chosen = selection.include | ({INITIAL} if first_deploy else set())
    if tags and not tags & chosen:
        return f"optional ({', '.join(sorted(tags))}); run it with --include {sorted(tags)[0]}"
    return None


def unmatched_tags(tasks: Iterable[TaskSpec], selection: Selection) -> list[str]:
    """Tags named on the command line that no task carries (worth a warning)."""
    carried = {tag for spec in tasks for tag in spec.optional}
    named = selection.include | selection.exclude | selection.only
    return sorted(named - carried)


def plan_by_stage(
    tasks: Iterable[TaskSpec], environment: str, selection: Selection, first_deploy: bool
) -> list[tuple[str, list[tuple[TaskSpec, str | None]]]]:
    """Per stage, in firing order: each task in run order with why it is skipped (or None)."""
    in_order = ordered(tasks)
    return [
        (
            stage,
            [
                (t, skip_reason(t, environment, selection, first_deploy))
                for t in in_order
                if t.stage == stage
            ],
        )
        for stage in FIRING_ORDER
        if any(t.stage == stage for t in in_order)
    ]


def interpreter(script: str) -> list[str]:
    """The command line that runs a task script: its `#!` line's, else `sh`."""
    first = script.partition("\n")[0]
    return (first[2:].split() if first.startswith("#!") else []) or ["sh"]
