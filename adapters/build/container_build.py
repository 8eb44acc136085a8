"""Builds in a container with the docker or podman CLI: the sources mounted, the image chosen.

From a git checkout the sources are `git archive` of the revision (uncommitted changes warned
and left out), unpacked under `.deliver/build/`; otherwise the project directory itself. They
are mounted at /build and the same script as a build host's runs there, as the container's user.
"""

from __future__ import annotations

import asyncio
import shutil
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from edeliver.adapters.build import build_scripts as bs
from edeliver.adapters.build.build_checks import check_contents, deps_failed
from edeliver.adapters.build.build_commands import run_build_command
from edeliver.adapters.build.git_source import archive, describe, git_source
from edeliver.adapters.build.mix_build import (
    BUILD_DIR,
    COMPILE,
    DEPS,
    GENERATE_RELEASE,
    BuildFailed,
    BuildStages,
    Built,
    no_stage_tasks,
    stages_around,
)
from edeliver.adapters.local.local_commands import LocalCommandHost
from edeliver.core.domain.errors import UsageError

# The deps/ and _build/ of the app's container builds, kept between builds on this machine and
# moved into each build's fresh sources, so deps are fetched and compiled once.
DEPS_CACHE = Path(".deliver/cache/container-build")


class ContainerBuilder:
    """`mix release` inside `image`, run with `cli` (docker or podman)."""

    def __init__(
        self,
        project: Path,
        app: str,
        image: str,
        *,
        cli: str = "podman",
        global_options: Sequence[str] = (),
        run_options: Sequence[str] = (),
        revision: str = "HEAD",
        env: Mapping[str, str] | None = None,
        warn: Callable[[str], None] = lambda _: None,
        at_stage: BuildStages | None = None,
        target: bs.MixTarget = bs.PROD,
    ) -> None:
        self.project, self.app, self.image, self.cli = project, app, image, cli
        self.target = target
        self.at_stage = at_stage or no_stage_tasks
        self.global_options, self.run_options = list(global_options), list(run_options)
        self.revision, self.env, self.warn = revision, dict(env or {}), warn
        self.build_dir = project / BUILD_DIR

    async def build(self) -> Built:
        if shutil.which(self.cli) is None:
            raise UsageError(f"build.container: {self.cli!r} is not installed here")
        sources, revision = await asyncio.to_thread(self._sources)
        if sources == self.project:  # not in git: the project keeps its own deps/ and _build/
            facts = await self._build(sources)
        else:
            with cached_deps(self.project / DEPS_CACHE, sources):
                facts = await self._build(sources)
        tarball = self.build_dir / f"{self.app}-{facts.version}.tar.gz"
        (sources / bs.TARBALL).replace(tarball)
        return Built(tarball, bs.built_artifact(self.app, facts, str(tarball), revision))

    async def _build(self, sources: Path) -> bs.BuildFacts:
        # The build host's files are the mounted sources here: build tasks run on them, Elixir
        # ones by the Mix of the image, where the build compiled the project and its deps.
        mounted, mix = LocalCommandHost(sources), InContainer(sources, self._command)
        async with stages_around(self.at_stage, mounted, DEPS, mix):
            await self._run(sources, "mix deps.get", bs.deps_script(self.env, self.target))
        async with stages_around(self.at_stage, mounted, COMPILE, mix):
            await self._run(sources, "mix compile", bs.compile_script(self.env, self.target))
        async with stages_around(self.at_stage, mounted, GENERATE_RELEASE, mix):
            releasing = bs.release_script(self.env, self.target)
            said = await self._run(sources, "mix release", releasing)
        facts = bs.parse_facts(said)
        check_contents(self.app, facts, self.env.get(bs.VERSION_SUFFIX, ""))
        return facts

    async def _run(self, sources: Path, doing: str, script: str) -> str:
        """One part of the build in a fresh container on the mounted sources; its stdout."""
        done = await run_build_command(self._command(sources, script))
        if done.returncode == bs.DEPS_FAILED and (
            error := deps_failed(f"the {self.image} container", done.stderr)
        ):
            raise error
        if done.returncode in (bs.DEPS_FAILED, bs.BUILD_FAILED):
            raise BuildFailed(
                f"{doing} failed in the {self.image} container; the end of its log:\n"
                f"{done.stderr.strip()}"
            )
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-bs.LOG_LINES :])
            raise BuildFailed(
                f"{self.cli} run {self.image} failed (exit {done.returncode}):\n{tail}"
            )
        return done.stdout

    def _sources(self) -> tuple[Path, str]:
        """The directory to mount: the revision's files, or the project when not in git."""
        source = git_source(self.project, self.revision)
        if source is None:
            return self.project, ""
        if source.dirty:
            self.warn(f"building {describe(source)}")
        packed = archive(source, self.build_dir / f"{self.app}.src.tar.gz")
        target = self.build_dir / "container-src"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        with tarfile.open(packed) as sources:
            sources.extractall(target, filter="data")  # refuses links and paths leaving target
        return target, source.revision

    def _command(self, sources: Path, script: str, names: Sequence[str] = ()) -> list[str]:
        """A fresh container on the mounted sources running `script`; `names`: variables it
        gets from the CLI's environment (`-e NAME`: their values are in no argument)."""
        passed = [word for name in names for word in ("-e", name)]
        return [
            self.cli, *self.global_options, "run", "--rm", *self.run_options,
            "-v", f"{sources.resolve()}:/build", "-w", "/build", *passed,
            self.image, "sh", "-c", script,
        ]  # fmt: skip


class InContainer(LocalCommandHost):
    """Task scripts run in a fresh container of the build's image on the mounted sources, with
    the task's environment (the CLI here is given it, the container takes it by name)."""

    def __init__(
        self, sources: Path, command: Callable[[Path, str, Sequence[str]], list[str]]
    ) -> None:
        super().__init__(sources)
        self.command = command

    def argv(self, script: str, env: Mapping[str, str]) -> list[str]:
        return self.command(self.directory, script, sorted(env))


@contextmanager
def cached_deps(cache: Path, sources: Path) -> Iterator[None]:
    """The cache's deps/ and _build/ moved into the fresh sources for the build (where build
    tasks see them too), and the build's moved back afterwards, failed or not."""
    for kept in bs.CACHED:
        if (cache / kept).is_dir() and not (sources / kept).exists():
            (cache / kept).rename(sources / kept)
    try:
        yield
    finally:
        cache.mkdir(parents=True, exist_ok=True)
        for kept in bs.CACHED:
            if (sources / kept).is_dir():
                shutil.rmtree(cache / kept, ignore_errors=True)
                (sources / kept).rename(cache / kept)
