"""Sending a release to a node over SFTP, and what the deployer checks before it sends one.

The file is written in blocks of one SFTP request each, `_IN_FLIGHT` at once, as tasks of our
own: asyncssh's parallel writer runs tasks nobody awaits once the upload is cancelled, and they
failed later, after the summary, with tracebacks. An upload cut short (the step's timeout)
drops the connection instead of closing the file politely: a node partitioned away never
answers the close, and waiting for it would last until keepalive gives up, a minute later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncssh

from edeliver.adapters.node.archive_check import refusal, tarfile_problems
from edeliver.adapters.node.transfer import sha256_of
from edeliver.core.domain.model import Artifact

# Below any sftp-server's packet limit, so asyncssh never splits a block: 1 MiB in flight a node.
_BLOCK = 64 * 1024
_IN_FLIGHT = 16
_PRIVATE_FILE = asyncssh.SFTPAttrs(permissions=0o600)  # uploads hold the release's COOKIE


def local_problems(local: Path, artifact: Artifact) -> list[str]:
    """Why the file on this machine must not be sent: not the manifest's bytes, or unsafe."""
    if (got := sha256_of(local)) != artifact.sha256:
        return [
            f"checksum mismatch for {artifact.name} on this machine: expected {artifact.sha256} "
            f"got {got}"
        ]
    problems = tarfile_problems(local)
    return [refusal(artifact.name, artifact.version, problems)] if problems else []


async def send_file(
    conn: asyncssh.SSHClientConnection,
    local: Path,
    remote: str,
    offset: int,
    sent: Callable[[int], None],
) -> None:
    """Write `local` from `offset` on into `remote` (created 0600, or resumed where it ends);
    `sent` hears the bytes done so far after each block."""
    sftp = await conn.start_sftp_client()
    try:
        # block_size=0: each write is one request, never split into asyncssh tasks.
        mode = "r+b" if offset else "wb"
        target = await sftp.open(remote, mode, _PRIVATE_FILE, block_size=0)
        await _write_from(local, target, offset, sent)
        await target.close()
    except asyncio.CancelledError:
        conn.abort()
        raise
    finally:
        sftp.exit()


async def _write_from(
    local: Path, target: asyncssh.SFTPClientFile, offset: int, sent: Callable[[int], None]
) -> None:
    done = offset

    def written(size: int) -> None:
        nonlocal done
        done += size
        sent(done)

    slots = asyncio.Semaphore(_IN_FLIGHT)
    try:
        async with asyncio.TaskGroup() as writes:
            with local.open("rb") as source:
                source.seek(offset)
                while block := source.read(_BLOCK):
                    await slots.acquire()
                    writes.create_task(_write_block(target, block, offset, slots, written))
                    offset += len(block)
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None


async def _write_block(
    target: asyncssh.SFTPClientFile,
    block: bytes,
    offset: int,
    slots: asyncio.Semaphore,
    written: Callable[[int], None],
) -> None:
    try:
        await target.write(block, offset)
    finally:
        slots.release()
    written(len(block))
