"""Local builds: `mix release` in the app's directory, packed as the tarball nodes unpack.

The release is built into `.deliver/build/release` (never into a directory a node runs from)
and packed with entries `bin/ erts-*/ lib/ releases/`, without a `./` prefix.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import tarfile
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edeliver.adapters.build.build_checks import BuildFailed, check_contents, deps_failed
from edeliver.adapters.build.build_commands import run_build_command
from edeliver.adapters.build.build_scripts import (
    PROD,
    VERSION_SUFFIX,
    BuildFacts,
    MixTarget,
    build_tasks,
    compile_argv,
    deps_argv,
    facts_script,
    parse_facts,
    release_argv,
)
from edeliver.adapters.build.git_source import git_source
from edeliver.adapters.local.bounded_output import run_local
from edeliver.adapters.local.local_commands import LocalCommandHost
from edeliver.core.domain.model import Artifact, Platform
from edeliver.core.ports import CommandHost

BUILD_DIR = Path(".deliver/build")
_LOG_TAIL = 20

__all__ = ["BuildFailed", "Built", "MixLocalBuilder"]


@dataclass(frozen=True)
class Built:
    """A release tarball on this machine (None: the build host put it in the store already)
    and what the store needs to know of it."""

    tarball: Path | None
    artifact: Artifact


def local_platform() -> Platform:
    """This machine's platform, in the form node probes report (`uname -s` lowered, `uname -m`)."""
    libc, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "unknown ").partition(" ")
    return Platform(platform.system().lower(), platform.machine(), libc, version)


class BuildStages(Protocol):
    """Runs the tasks of a build stage (edeliver 1.x's hooks) with the build host to run them
    on, and `mix`: where the built project's Mix runs Elixir tasks, when not on `host` (a
    container build: a container of its image)."""

    def __call__(
        self, stage: str, host: CommandHost, mix: CommandHost | None = None
    ) -> Coroutine[Any, Any, None]: ...


SUBMODULES = ("pre_git_submodules", "post_git_submodules")
DEPS = ("pre_erlang_get_and_update_deps", "post_erlang_get_and_update_deps")
COMPILE = ("pre_erlang_clean_compile", "post_erlang_clean_compile")
GENERATE_RELEASE = ("pre_erlang_generate_release", "post_erlang_generate_release")


async def no_stage_tasks(stage: str, host: CommandHost, mix: CommandHost | None = None) -> None:
    return None


@asynccontextmanager
async def stages_around(
    at_stage: BuildStages,
    host: CommandHost,
    stages: tuple[str, str],
    mix: CommandHost | None = None,
) -> AsyncIterator[None]:
    """A build step between its two stages (the step's error skips the second)."""
    await at_stage(stages[0], host, mix)
    yield
    await at_stage(stages[1], host, mix)


class MixLocalBuilder:
    """Builds the app's release with the local `mix`, its deps in the project's own `deps/`."""

    def __init__(
        self,
        project: Path,
        app: str,
        env: Mapping[str, str] | None = None,
        build_dir: Path | None = None,
        at_stage: BuildStages | None = None,
        target: MixTarget = PROD,
    ) -> None:
        self.project, self.app, self.env = project.resolve(), app, dict(env or {})
        self.target = target
        self.build_dir = build_dir or self.project / BUILD_DIR
        self.at_stage = at_stage or no_stage_tasks
        self.task_file = self.build_dir / "build_tasks.exs"

    async def build(self) -> Built:
        release = self.build_dir / "release"
        await self._build_into(release)
        return await asyncio.to_thread(self._packed, release)

    def _packed(self, release: Path) -> Built:
        """The built release checked, given its RELEASES file and packed into its tarball."""
        facts = toolchain_facts(release)
        check_contents(self.app, facts, self.env.get(VERSION_SUFFIX, ""))
        create_releases_file(release, facts.version)
        tarball = self.build_dir / f"{self.app}-{facts.version}.tar.gz"
        pack_release(release, tarball)
        source = git_source(self.project)
        artifact = Artifact(
            self.app, facts.version, sha256="", size=0, platform=local_platform(),
            location=str(tarball), git_revision=source.revision if source else "",
            erts=facts.erts, otp=facts.otp, elixir=facts.elixir,
        )  # fmt: skip
        return Built(tarball, artifact)

    async def _build_into(self, release: Path) -> None:
        """Submodules, deps, compile and release, between their stages; nothing here blocks
        the event loop the stages' tasks run on."""
        here = LocalCommandHost(self.project)  # the build host of a local build
        self.task_file.parent.mkdir(parents=True, exist_ok=True)
        self.task_file.write_text(build_tasks())
        if (self.project / ".gitmodules").is_file():
            async with stages_around(self.at_stage, here, SUBMODULES):
                await asyncio.to_thread(self._update_submodules)
        async with stages_around(self.at_stage, here, DEPS):
            await self._mix(deps_argv(self.target, str(self.task_file)), "mix deps.get")
        async with stages_around(self.at_stage, here, COMPILE):
            await self._mix(compile_argv(str(self.task_file)), "mix compile")
        async with stages_around(self.at_stage, here, GENERATE_RELEASE):
            shutil.rmtree(release, ignore_errors=True)  # no releases/ or lib/ of older builds
            argv = release_argv(self.target, str(self.task_file), str(release))
            await self._mix(argv, "mix release")

    def _update_submodules(self) -> None:
        """The working tree is the build's checkout: its submodules are part of the sources."""
        update = ["git", "-C", str(self.project), "submodule", "update", "--init", "--recursive"]
        done = run_local(update)
        if done.returncode != 0:
            said = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise BuildFailed(f"git submodule update failed in {self.project}: {said[0]}")

    async def _mix(self, argv: list[str], doing: str) -> None:
        if shutil.which("mix") is None:
            raise BuildFailed(
                "mix is not installed here (Debian: apt-get install elixir erlang-dev)"
            )
        env = {**os.environ, "MIX_ENV": self.target.mix_env, **self.env}
        done = await run_build_command(argv, cwd=self.project, env=env)
        if done.returncode == 0:
            return
        log = done.stdout + done.stderr
        if doing == "mix deps.get" and (error := deps_failed(str(self.project), log)):
            raise error
        tail = "\n".join(log.strip().splitlines()[-_LOG_TAIL:])
        raise BuildFailed(f"{doing} failed in {self.project}:\n{tail}")


def toolchain_facts(release: Path) -> BuildFacts:
    """ERTS, OTP and Elixir versions of a local build, as build hosts report theirs."""
    done = run_local(["sh", "-c", facts_script()], cwd=release)
    return parse_facts(done.stdout)


def create_releases_file(release: Path, version: str) -> None:
    """Write releases/RELEASES, which `mix release` leaves out: without it release_handler
    invents a stub and a later hot downgrade fails (hot-upgrades.md P1). Run in the release's
    own VM, so its lib paths are relative to the release root and the tarball stays relocatable.
    """
    (rel,) = (release / "releases" / version).glob("*.rel")
    releases = release / "releases"
    code = (
        ":ok = :release_handler.create_RELEASES("
        'to_charlist(System.fetch_env!("EDELIVER_RELDIR")), '
        'to_charlist(System.fetch_env!("EDELIVER_REL")), [])'
    )
    (releases / "RELEASES").unlink(missing_ok=True)
    env = {**os.environ, "EDELIVER_RELDIR": str(releases), "EDELIVER_REL": str(rel)}
    done = run_local([str(release / "bin" / rel.stem), "eval", code], env=env)
    if done.returncode != 0:
        raise BuildFailed(f"creating {releases}/RELEASES failed: {done.stderr.strip()[-1000:]}")


def pack_release(release: Path, tarball: Path) -> None:
    """gzip tar of the release root's top-level dirs, renamed into place when complete."""
    partial = tarball.with_name(tarball.name + ".partial")
    with tarfile.open(partial, "w:gz") as archive:
        for entry in sorted(release.iterdir()):
            if entry.name in ("bin", "lib", "releases") or entry.name.startswith("erts-"):
                archive.add(entry, arcname=entry.name)
    partial.replace(tarball)
