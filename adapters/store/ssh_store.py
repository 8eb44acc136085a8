"""The ReleaseStore port on a store host over SSH (`user@host:/path`), with asyncssh.

Same layout as the local store: `<path>/<app>/<version>/<app>-<version>.tar.gz` and
`manifest.json`, written last by a rename, so a listing never shows a half-stored version; a
hot-upgrade package from FROM below it in `upgrades/<FROM>/`. The
deployer connects like to a node (host key verified against the same known_hosts, retries,
errors mapped in one place). For a pull, each node runs `ssh ... cat` to the store host: with a
key of its own (`transfer.node_identity_file` or its user's default key), and checking the
store's host key against the one the deployer verified, written beside its uploads.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import asyncssh

from edeliver.adapters.node.node_scripts import APP_NAME, REMOTE_SH, checked_version
from edeliver.adapters.node.ssh import AsyncsshNodeShells
from edeliver.adapters.node.ssh_host_keys import known_hosts_line
from edeliver.adapters.node.ssh_output import log_script, run_bounded
from edeliver.adapters.node.transfer import VerifiedCache, sha256_of
from edeliver.adapters.store.local_store import (
    MANIFEST,
    UPGRADES,
    StoreUnreachable,
    from_manifest,
    manifest_text,
    package_from_manifest,
    place_of,
    refuse_another_build,
    stored_as,
    upgrade_place,
)
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import HostKeyError, NodeError, NotFoundError, UsageError
from edeliver.core.domain.model import Artifact
from edeliver.core.domain.versions import version_key

q = shlex.quote
_COMMAND_SECONDS = 120  # a listing, a manifest read, a removal: short commands


class SshReleaseStore:
    """Releases in a directory of a store host reached over SSH."""

    def __init__(
        self,
        host: NodeConfig,
        cache: Path,
        shells: AsyncsshNodeShells,
        *,
        node_identity_file: str | None = None,
    ) -> None:
        self.host, self.cache, self.shells = host, VerifiedCache(cache), shells
        self.node_identity_file = node_identity_file
        self._host_key_line: str | None = None

    @property
    def url(self) -> str:
        return f"{self.host.user}@{self.host.host}:{self.host.path}"

    # -- the port ----------------------------------------------------------------------------

    async def versions(self, app: str) -> list[str]:
        script = (
            f"cd {q(self._dir(app))} 2>/dev/null || exit 0\n"
            'for m in */manifest.json; do [ -f "$m" ] && echo "${m%/manifest.json}"; done\n'
            "exit 0\n"
        )
        async with self._connection() as conn:
            said = await self._run(conn, script, f"listing {app}")
        return sorted(said.split(), key=version_key)

    async def artifact(self, app: str, version: str) -> Artifact:
        directory = self._dir(app, version)
        said = await self._manifest(directory)
        if not said:
            known = ", ".join(await self.versions(app)) or "none"
            raise NotFoundError(
                f"version {version} of {app} is not in the store {self.url} (it has: {known})"
            )
        where = self._where(f"{directory}/{MANIFEST}")
        location = f"{directory}/{app}-{version}.tar.gz"
        return from_manifest(said, where, location, (app, version))

    async def upgrade(self, app: str, from_version: str, version: str) -> Artifact | None:
        """The hot-upgrade package from `from_version` to `version`, if one was built."""
        directory = self._dir(*upgrade_place(app, from_version, version))
        said = await self._manifest(directory)
        if not said:
            return None
        where = self._where(f"{directory}/{MANIFEST}")
        return package_from_manifest(said, where, lambda name: f"{directory}/{name}")

    async def _manifest(self, directory: str) -> str:
        """The manifest kept in `directory`, or "" when there is none."""
        manifest = f"{directory}/{MANIFEST}"
        async with self._connection() as conn:
            said = await self._run(conn, f"cat {q(manifest)} 2>/dev/null || exit 0\n", "reading")
        return said.strip()

    # -- writing -----------------------------------------------------------------------------

    async def put(
        self, tarball: Path, artifact: Artifact, extra: dict[str, Any] | None = None
    ) -> Artifact:
        """Upload the tarball, then write its manifest last; a version is immutable."""
        directory = self._dir(*place_of(artifact))
        stored = replace(
            artifact,
            sha256=sha256_of(tarball),
            size=tarball.stat().st_size,
            location=f"{directory}/{artifact.name}",
        )
        await self._put(tarball, stored, manifest_text(stored, extra or {}))
        return stored

    async def _put(self, tarball: Path, stored: Artifact, manifest: str) -> None:
        directory = self._dir(*place_of(stored))
        if existing := await self._manifest(directory):
            was = json.loads(existing)["sha256"]
            refuse_another_build(stored.app, stored_as(stored), self.url, was, stored.sha256)
            return
        async with self._connection() as conn:
            await self._run(conn, f"mkdir -p {q(directory)}\n", "creating the version's dir")
            try:
                async with conn.start_sftp_client() as sftp:
                    await sftp.put(str(tarball), stored.location + ".partial")
                    await sftp.posix_rename(stored.location + ".partial", stored.location)
                    async with sftp.open(f"{directory}/{MANIFEST}.partial", "w") as out:
                        await out.write(manifest)
                    manifest_path = f"{directory}/{MANIFEST}"
                    await sftp.posix_rename(manifest_path + ".partial", manifest_path)
            except (asyncssh.Error, OSError) as error:
                raise StoreUnreachable(f"store {self.url}: storing failed: {error}") from None

    async def remove(self, app: str, version: str) -> None:
        """Delete a version and its upgrade packages, its manifest first."""
        directory = self._dir(app, version)
        script = f"rm -f {q(directory + '/' + MANIFEST)} && rm -rf {q(directory)}\n"
        async with self._connection() as conn:
            await self._run(conn, script, f"removing {app} {version}")

    # -- getting the bytes to a node ---------------------------------------------------------

    async def local_file(self, artifact: Artifact) -> Path:
        """A verified copy in the local cache, for a push."""
        return await self.cache.get(artifact, self.url, partial(self._download, artifact))

    async def _download(self, artifact: Artifact, target: Path) -> None:
        async with self._connection() as conn:
            try:
                async with conn.start_sftp_client() as sftp:
                    await sftp.get(artifact.location, str(target))
            except (asyncssh.Error, OSError) as error:
                raise StoreUnreachable(f"store {self.url}: downloading failed: {error}") from None

    async def fetch_command(self, artifact: Artifact) -> str:
        """`ssh ... cat` from the node to the store host, checking the deployer's pinned key."""
        if self._host_key_line is None:
            async with self._connection() as conn:
                key = conn.get_server_host_key()
                port = int(conn.get_extra_info("peername")[1])  # the ssh config's, if not set
            if key is None:
                raise HostKeyError(f"store {self.url} offered no host key")
            self._host_key_line = known_hosts_line(self.host.host, port, key)
        identity = ["-i", self.node_identity_file] if self.node_identity_file else []
        options = [
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", "GlobalKnownHostsFile=/dev/null", *identity, "-p", str(self.host.port),
            f"{self.host.user}@{self.host.host}", f"cat -- {q(artifact.location)}",
        ]  # fmt: skip
        return (
            f'printf "%s\\n" {q(self._host_key_line)} >"$S/store_known_hosts" && '
            f'ssh -o UserKnownHostsFile="$S/store_known_hosts" {shlex.join(options)}'
        )

    # -- plumbing ----------------------------------------------------------------------------

    def _where(self, path: str) -> str:
        """A path on the store host as errors name it: `user@host:/path`."""
        return f"{self.host.user}@{self.host.host}:{path}"

    def _dir(self, app: str, *below: str) -> str:
        """The directory of `app`, or of a place below it (`place_of`), with each part checked
        for use in a path on the store host."""
        if not APP_NAME.match(app):
            raise UsageError(f"app name {app!r} is not a plain lower-case OTP app name")
        checked = (part if part == UPGRADES else checked_version(part) for part in below)
        return "/".join((self.host.path.rstrip("/"), app, *checked))

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncssh.SSHClientConnection]:
        try:
            conn = await self.shells.connect(self.host)
        except HostKeyError:
            raise
        except NodeError as error:
            raise StoreUnreachable(f"store {self.url}: {error}") from None
        try:
            yield conn
        finally:
            conn.close()

    async def _run(self, conn: asyncssh.SSHClientConnection, script: str, doing: str) -> str:
        log_script("store", script)
        try:
            result = await run_bounded(conn, REMOTE_SH, script, timeout=_COMMAND_SECONDS)
        except TimeoutError:
            raise StoreUnreachable(
                f"store {self.url}: {doing} had no answer within {_COMMAND_SECONDS}s"
            ) from None
        except (asyncssh.Error, OSError) as error:
            raise StoreUnreachable(f"store {self.url}: {doing} failed: {error}") from None
        if result.exit_status != 0:
            detail = str(result.stderr or "").strip()[-500:]
            raise StoreUnreachable(f"store {self.url}: {doing} failed: {detail or 'no output'}")
        return str(result.stdout)
