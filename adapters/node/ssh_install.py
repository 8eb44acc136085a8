"""A node shell's upload and install: the release pushed (streamed and unpacked as it comes,
or resumed over SFTP) or pulled by the node, verified, its entries checked before anything is
unpacked, placed beside the running release, and the runtime settings written.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable
from pathlib import Path

import asyncssh

from edeliver.adapters.local.bounded_output import was_cut
from edeliver.adapters.node.archive_check import LISTING_LIMIT, listing_problems, refusal
from edeliver.adapters.node.install_scripts import (
    UploadSpace,
    failed_upload_script,
    fetch_script,
    finish_upload_script,
    install_state_script,
    listing_script,
    parse_failed_upload,
    place_script,
    remove_upload_script,
    script_parts,
    unpack_script,
    upload_state_script,
)
from edeliver.adapters.node.node_scripts import Layout
from edeliver.adapters.node.node_state import STATE_REPORT, NodeState, parse_probe
from edeliver.adapters.node.runtime_env_files import WRITING
from edeliver.adapters.node.sftp_upload import send_file
from edeliver.adapters.node.ssh_channel import NodeConnection, NodeShellSettings
from edeliver.adapters.node.ssh_output import run_streaming
from edeliver.adapters.node.stream_install import stream_script, streaming_remote_sh
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import NodeError, NodeUnreachable
from edeliver.core.domain.model import Artifact


class ReleaseInstall(NodeConnection):
    """The prepare and install steps of a full release on one node."""

    def __init__(
        self, node: NodeConfig, shells: NodeShellSettings, conn: asyncssh.SSHClientConnection
    ) -> None:
        super().__init__(node, shells, conn)
        self._streamed_listings: dict[str, str] = {}  # upload path -> the listing printed then
        # The version installed last and the node's state right after: what its activation
        # plans from, if the node still shows it then (`switch_scripts.Unchanged`).
        self._installed: tuple[str, NodeState] | None = None
        # The node's state as its probe read it, under the lock: a prepare that follows needs
        # no script when the release is complete on the node already.
        self._probed: NodeState | None = None

    async def prepare(self, artifact: Artifact, *, unpack: bool = True) -> None:
        """Upload and verify; a full release (`unpack`) pushed whole is unpacked as it comes.
        Nothing when the probe just found the release complete on the node (the install
        finds it there, and needs no upload); no look at the upload path first when the probe
        found nothing there."""
        probed, self._probed = self._probed, None
        if unpack and probed is not None and artifact.version in probed.facts.releases:
            return
        layout = self._layout(artifact)
        fetch = await self._shells.delivery.fetch_command(artifact)
        # A push is checked before anything touches the node; a pull, on the node at install.
        local = (
            await self._shells.checked_local_file(self.name, artifact) if fetch is None else None
        )
        upload = layout.upload(artifact.version)
        said = (
            ""  # the probe, under the same lock, found nothing there
            if probed is not None and probed.upload_state(upload) == "none"
            else await self.script_output(
                upload_state_script(layout, artifact.version, artifact.sha256)
            )
        )
        if said.strip() == "done":
            return
        offset = int(said.partition("partial=")[2] or 0)
        if fetch is None and offset == 0:
            assert local is not None
            return await self._stream(layout, artifact, local, unpack)
        if fetch is None:  # a partial upload left by a lost connection: resumed, then unpacked
            assert local is not None
            await self._upload(artifact, local, layout.upload(artifact.version), offset)
        else:
            await self._fetch(layout, artifact, fetch)
        finish = finish_upload_script(layout, artifact.version, artifact.sha256)
        result = await self.run_script(finish)
        if result.exit_status == 4:
            raise NodeError(self._mismatch(artifact, str(result.stdout).strip()))
        self._check(result, f"verifying the upload of {artifact.name}")

    async def install(self, artifact: Artifact) -> None:
        """One script when the release was streamed in by this shell (its listing checked
        here first) or is installed already; else two: the listing, checked, then the unpack.
        Either way the runtime settings are written and the node's state read by the same
        script, after the release is in place (its COOKIE made the environment's too)."""
        layout, v = self._layout(artifact), artifact.version
        upload, unpacked = layout.upload(v), f"{layout.path}/releases/.{v}.partial"
        streamed = self._streamed_listings.pop(upload, None)
        if streamed is not None:
            await self._refuse_unsafe(streamed, upload, artifact, unpacked)
        then, checked = self._after_install(), _sha256(streamed)
        parts = await self._install_part(
            install_state_script(layout, v, then, checked), artifact, "probing"
        )
        state, _, listing = parts[""].partition("\n")
        if state == "missing":
            raise NodeError(f"{self.name}: {artifact.name} was not uploaded: run prepare first")
        if state == "streamed":  # unpacked as it came: checked, then renamed into place
            await self._refuse_unsafe(listing, upload, artifact, unpacked)
            script = place_script(layout, v, then)
            parts = await self._install_part(script, artifact, f"installing {artifact.name}")
        elif state not in ("installed", "placed"):  # `listing`, then the upload's
            await self._refuse_unsafe(listing, upload, artifact)
            script = unpack_script(layout, v, then)
            parts = await self._install_part(script, artifact, f"unpacking {artifact.name}")
        if "env" in parts:
            self._hide = None  # the files may have come since: read them again
        self._installed = (v, parse_probe(parts["state"]))

    async def run_then_write_runtime_env(self, script: str, doing: str) -> None:
        """Run `script`, then write the claiming deployment's environment's runtime settings in
        the same script (one round trip); a failure is named by the part that failed."""
        result = await self.run_script(script + self._runtime_env_part())
        parts = script_parts(str(result.stdout))
        part = list(parts)[-1]
        self._check(result, WRITING if part == "env" else doing, parts[part])
        if "env" in parts:
            self._hide = None  # the files may have come since: read them again

    def _after_install(self) -> str:
        """The install's last parts: the runtime settings written, then the node's state."""
        return self._runtime_env_part() + "echo part=state\n" + STATE_REPORT

    def _runtime_env_part(self) -> str:
        """A script's part writing the claiming environment's runtime settings, if any."""
        runtime = self._shells.runtime_env
        if runtime is None or self._claim is None:
            return ""
        write = runtime.write_script_of(self.node.path, self._claim.environment, self.name)
        return f"echo part=env\n(\n{write}) || exit $?\n"

    async def _install_part(self, script: str, artifact: Artifact, found: str) -> dict[str, str]:
        """Run an install script; a failure named by the part that failed, as when each part
        was a script of its own (`found`: the doing of what runs before the first part)."""
        result = await self.run_script(script, limit=LISTING_LIMIT)
        parts = script_parts(str(result.stdout))
        part = list(parts)[-1]
        doing = {"place": f"installing {artifact.name}", "env": WRITING}.get(part, found)
        self._check(result, "probing" if part == "state" else doing, parts[part])
        return parts

    async def check_upload(self, upload: str, artifact: Artifact) -> None:
        """Refuse (and delete) the uploaded archive `upload` if an entry of it is unsafe: by
        the listing its streamed upload printed, else by listing it on the node."""
        listing = self._streamed_listings.pop(upload, None)
        if listing is None:
            listing = await self.script_output(
                listing_script(upload), f"listing {artifact.name}", limit=LISTING_LIMIT
            )
        await self._refuse_unsafe(listing, upload, artifact)

    async def _refuse_unsafe(
        self, listing: str, upload: str, artifact: Artifact, unpacked: str | None = None
    ) -> None:
        too_long = f"its listing is over {LISTING_LIMIT >> 20} MiB, too many entries to check"
        problems = [too_long] if was_cut(listing) else listing_problems(listing.splitlines())
        if problems:
            remove = remove_upload_script(upload, unpacked)
            await self.script_output(remove, "removing a refused upload")
            why = refusal(artifact.name, artifact.version, problems)
            raise NodeError(f"{self.name}: {why}; the upload was deleted")

    async def _upload(self, artifact: Artifact, local: Path, upload: str, offset: int) -> None:
        """Send `local` into `upload`.partial (resumed from `offset`); a write the node refused
        removes the partial and says why, a full disk by name. A lost connection keeps the
        partial for the next try to resume (a rollback removes it)."""
        if not local.is_file():
            raise NodeError(f"{self.name}: {artifact.name} is not at {artifact.location!r}")
        total = local.stat().st_size
        offset = offset if 0 < offset <= total else 0
        partial = upload + ".partial"
        try:
            await self._on_channel(
                f"uploading {artifact.name}", lambda: self._send(local, partial, offset, total)
            )
        except NodeUnreachable:
            raise
        except NodeError as error:
            raise NodeError(await self._failed_upload(partial, artifact, error)) from None

    async def _stream(
        self, layout: Layout, artifact: Artifact, local: Path, unpack: bool = True
    ) -> None:
        """Push the release and unpack (or only list) it as it arrives (see `stream_install`):
        the node's install is one pass over its bytes."""
        if not local.is_file():
            raise NodeError(f"{self.name}: {artifact.name} is not at {artifact.location!r}")
        size, v = local.stat().st_size, artifact.version
        script = stream_script(layout, v, artifact.sha256, size, unpack=unpack)
        result = await self.run_script(
            script, lambda run_name, conn: run_streaming(
                conn, streaming_remote_sh(run_name), script, local, self._sent(size),
                LISTING_LIMIT,
            ),
        )  # fmt: skip
        if result.exit_status == 4:
            raise NodeError(self._mismatch(artifact, str(result.stdout).strip()))
        if result.exit_status == 7:
            error = NodeError(f"{self.name}: uploading {artifact.name} failed")
            partial = layout.upload(v) + ".partial"
            raise NodeError(await self._failed_upload(partial, artifact, error))
        self._check(result, f"uploading and {'unpacking' if unpack else 'listing'} {artifact.name}")
        listing = str(result.stdout)
        if not was_cut(listing):  # else the install reads it from the node
            self._streamed_listings[layout.upload(v)] = listing

    def _sent(self, total: int) -> Callable[[int], None]:
        def sent(done: int) -> None:
            if self._shells.progress:
                self._shells.progress(self.name, done, total)

        return sent

    def _mismatch(self, artifact: Artifact, got: str) -> str:
        return (
            f"{self.name}: checksum mismatch for {artifact.name} on the node: expected "
            f"{artifact.sha256} got {got}; the upload was deleted, nothing was unpacked"
        )

    async def _send(self, local: Path, remote: str, offset: int, total: int) -> None:
        await send_file(self._conn, local, remote, offset, self._sent(total))

    async def _fetch(self, layout: Layout, artifact: Artifact, fetch: str) -> None:
        """Pull: the node runs the store's fetch command; a failed one leaves no partial."""
        result = await self.run_script(fetch_script(layout, artifact.version, fetch))
        if result.exit_status == 7:
            partial = layout.upload(artifact.version) + ".partial"
            space = parse_failed_upload(str(result.stdout))
            detail = str(result.stderr or "").strip()[-1000:] or "no output"
            error = f"{self.name}: fetching {artifact.name} from the store failed: {detail}"
            raise NodeError(self._upload_failure(space, partial, artifact, error))
        self._check(result, f"fetching {artifact.name} from the store")

    async def _failed_upload(self, partial: str, artifact: Artifact, error: NodeError) -> str:
        """Remove the partial upload; the message: a full disk named as such, else `error`."""
        said = await self.script_output(failed_upload_script(partial), check=False)
        return self._upload_failure(parse_failed_upload(said), partial, artifact, str(error))

    def _upload_failure(
        self, space: UploadSpace | None, partial: str, artifact: Artifact, error: str
    ) -> str:
        """Why an upload (or fetch) failed, its partial removed: a full disk by name."""
        missing = artifact.size - space.partial_bytes if space else 0
        if space is not None and space.free_bytes < missing:
            return (
                f"{self.name}: the disk at {posixpath.dirname(partial)} is full "
                f"({space.free_bytes} bytes free, {missing} more needed for {artifact.name}); "
                "the partial upload was removed"
            )
        return f"{error}; the partial upload was removed"


def _sha256(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest() if text is not None else None
