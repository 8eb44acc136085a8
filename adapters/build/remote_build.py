"""Builds on a build host over SSH: `git archive` of a revision in, the release tarball out.

The sources are the local checkout's commit (no push to any repository), unpacked in a fresh
per-build directory under the host's path and removed afterwards. The host is connected to like
a node: host key verified, errors mapped once (`AsyncsshNodeShells.connect`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import asyncssh

from edeliver.adapters.build import build_scripts as bs
from edeliver.adapters.build.build_checks import check_contents, deps_failed
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
)
from edeliver.adapters.node.command_scripts import task_script
from edeliver.adapters.node.node_scripts import REMOTE_SH
from edeliver.adapters.node.ssh import AsyncsshNodeShells, command_result
from edeliver.adapters.node.ssh_output import log_script, run_bounded
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import NodeError, UsageError
from edeliver.core.ports import CommandResult, DirectStore

q = bs.q
_BUILD_SECONDS = 1800  # one part of a build (deps, compile, release) on the build host
# Under the build host's path: per app, the deps/ and _build/ of its last build, moved into the
# next build's fresh directory (like edeliver 1.x's build dir), so deps are fetched and compiled
# once. A build that cannot move them in (another build of the app holds them) starts cold.
CACHE_DIR = ".edeliver-cache"


def reuse_deps_script(remote: str, cache: str) -> str:
    """Move the app's cached deps/ and _build/ into the build directory."""
    return (
        "".join(
            f"[ -d {q(f'{cache}/{d}')} ] && [ ! -e {q(f'{remote}/{d}')} ] && "
            f"mv {q(f'{cache}/{d}')} {q(f'{remote}/{d}')}\n"
            for d in bs.CACHED
        )
        + "true\n"
    )


def keep_deps_script(remote: str, cache: str) -> str:
    """Move the build's deps/ and _build/ back into the app's cache (replacing older ones)."""
    return f"mkdir -p {q(cache)}\n" + "".join(
        f"[ -d {q(f'{remote}/{d}')} ] && rm -rf {q(f'{cache}/{d}')} && "
        f"mv -T {q(f'{remote}/{d}')} {q(f'{cache}/{d}')}\n"
        for d in bs.CACHED
    )


class _BuildDirectory:
    """The per-build directory on the build host, where `where = "build"` tasks run."""

    def __init__(self, conn: asyncssh.SSHClientConnection, path: str) -> None:
        self.conn, self.path = conn, path

    async def run_command(self, script: str, env: Mapping[str, str]) -> CommandResult:
        task = task_script(self.path, env, script)
        log_script("build host", task)
        return command_result(await run_bounded(self.conn, REMOTE_SH, task))


class SshBuildHost:
    """`mix release` on a build host reached over SSH."""

    def __init__(
        self,
        project: Path,
        app: str,
        host: NodeConfig,
        shells: AsyncsshNodeShells,
        *,
        revision: str = "HEAD",
        env: Mapping[str, str] | None = None,
        warn: Callable[[str], None] = lambda _: None,
        direct: DirectStore | None = None,
        at_stage: BuildStages | None = None,
        target: bs.MixTarget = bs.PROD,
    ) -> None:
        self.project, self.app, self.host, self.shells = project, app, host, shells
        self.target = target
        self.direct, self.at_stage = direct, at_stage or no_stage_tasks
        self.revision, self.env, self.warn = revision, dict(env or {}), warn
        self.build_dir = project / BUILD_DIR

    @property
    def where(self) -> str:
        return f"build host {self.host.address}"

    async def build(self) -> Built:
        sources, revision = await asyncio.to_thread(self._sources)
        return await self._build(sources, revision)

    def _sources(self) -> tuple[Path, str]:
        """`git archive` of the revision to build, and the revision."""
        source = git_source(self.project, self.revision)
        if source is None:
            raise UsageError(
                f"{self.project} is not in a git checkout: remote builds send a git revision"
            )
        if source.dirty:
            self.warn(f"building {describe(source)}")
        sources = archive(source, self.build_dir / f"{self.app}-{source.revision[:12]}.src.tar.gz")
        return sources, source.revision

    async def _build(self, sources: Path, revision: str) -> Built:
        try:
            conn = await self.shells.connect(self.host)
        except NodeError as error:
            raise BuildFailed(f"{self.where}: {error}") from None
        remote = f"{self.host.path.rstrip('/')}/{self.app}-{revision[:12]}-{secrets.token_hex(4)}"
        cache = f"{self.host.path.rstrip('/')}/{CACHE_DIR}/{self.app}"
        try:
            facts = await self._remote_build(conn, sources, remote, cache)
            check_contents(self.app, facts, self.env.get(bs.VERSION_SUFFIX, ""))
            if self.direct:
                return await self._put_from_host(conn, remote, facts, revision, self.direct)
            tarball = self.build_dir / f"{self.app}-{facts.version}.tar.gz"
            await self._sftp(conn, "fetching the release", "get", f"{remote}/{bs.TARBALL}", tarball)
        finally:
            await self._run(conn, keep_deps_script(remote, cache) + f"rm -rf {q(remote)}\n")
            conn.close()
        return Built(tarball, bs.built_artifact(self.app, facts, str(tarball), revision))

    async def _put_from_host(
        self,
        conn: asyncssh.SSHClientConnection,
        remote: str,
        facts: bs.BuildFacts,
        revision: str,
        store: DirectStore,
    ) -> Built:
        """The build host uploads the tarball to the store itself and reports its checksum."""
        location, upload = await store.upload_command(self.app, facts.version, bs.TARBALL)
        script = f"cd {q(remote)} || exit 3\n" + bs.upload_script(upload)
        result = await self._run(conn, script)
        await self._check(result, "putting the release into the store")
        sha256, size = bs.parse_upload(str(result.stdout))
        artifact = bs.built_artifact(self.app, facts, location, revision)
        return Built(None, replace(artifact, sha256=sha256, size=size))

    async def _remote_build(
        self, conn: asyncssh.SSHClientConnection, sources: Path, remote: str, cache: str
    ) -> bs.BuildFacts:
        """The build, with edeliver 1.x's build stages around its parts on the build host."""
        host = _BuildDirectory(conn, remote)
        await self.at_stage("pre_init_app_remotely", host)
        await self._check(await self._run(conn, f"mkdir -p {q(remote)}\n"), "making the build dir")
        await self.at_stage("post_init_app_remotely", host)
        await self.at_stage("pre_git_push", host)
        await self._sftp(conn, "sending the sources", "put", sources, f"{remote}/src.tar.gz")
        unpack = f"cd {q(remote)} && tar -xzf src.tar.gz\n"
        await self._check(await self._run(conn, unpack), "unpacking the sources")
        await self.at_stage("post_git_push", host)
        await self._run(conn, reuse_deps_script(remote, cache))
        await self.at_stage(DEPS[0], host)
        await self._build_part(conn, remote, "mix deps.get", bs.deps_script(self.env, self.target))
        await self.at_stage(DEPS[1], host)
        await self.at_stage(COMPILE[0], host)
        compiling = bs.compile_script(self.env, self.target)
        await self._build_part(conn, remote, "mix compile", compiling)
        await self.at_stage(COMPILE[1], host)
        await self.at_stage(GENERATE_RELEASE[0], host)
        releasing = bs.release_script(self.env, self.target)
        said = await self._build_part(conn, remote, "mix release", releasing)
        await self.at_stage(GENERATE_RELEASE[1], host)
        return bs.parse_facts(said)

    async def _build_part(
        self, conn: asyncssh.SSHClientConnection, remote: str, doing: str, part: str
    ) -> str:
        result = await self._run(conn, f"cd {q(remote)} || exit 3\n" + part)
        if result.exit_status == bs.DEPS_FAILED and (
            error := deps_failed(self.where, str(result.stderr))
        ):
            raise error
        if result.exit_status in (bs.DEPS_FAILED, bs.BUILD_FAILED):
            raise BuildFailed(
                f"{doing} failed on the {self.where} (revision {self.revision}); "
                f"the end of its log:\n{str(result.stderr).strip()}"
            )
        await self._check(result, "building")
        return str(result.stdout)

    async def _run(
        self, conn: asyncssh.SSHClientConnection, script: str
    ) -> asyncssh.SSHCompletedProcess:
        log_script("build host", script)
        try:
            return await run_bounded(conn, REMOTE_SH, script, timeout=_BUILD_SECONDS)
        except TimeoutError:
            raise BuildFailed(f"{self.where}: no end within {_BUILD_SECONDS}s") from None
        except (asyncssh.Error, OSError) as error:
            raise BuildFailed(f"{self.where}: {error}") from None

    async def _check(self, result: asyncssh.SSHCompletedProcess, doing: str) -> None:
        if result.exit_status != 0:
            said = str(result.stderr or result.stdout or "").strip()[-1000:]
            raise BuildFailed(f"{self.where}: {doing} failed (exit {result.exit_status}): {said}")

    async def _sftp(
        self,
        conn: asyncssh.SSHClientConnection,
        doing: str,
        direction: str,
        source: Path | str,
        target: Path | str,
    ) -> None:
        try:
            async with conn.start_sftp_client() as sftp:
                await (sftp.put if direction == "put" else sftp.get)(str(source), str(target))
        except (asyncssh.Error, OSError) as error:
            raise BuildFailed(f"{self.where}: {doing} failed: {error}") from None
