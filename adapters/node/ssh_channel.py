"""Running scripts on a node's connection: a channel slot each (sshd's MaxSessions), the
connection reopened and the node's lock retaken when it was lost, a script cut short stopped on
the node with what it started, and the settings a node shell reads from its `AsyncsshNodeShells`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import asyncssh

from edeliver.adapters.local.bounded_output import LIMIT
from edeliver.adapters.node import node_scripts as ns
from edeliver.adapters.node.node_lock import NodeLock
from edeliver.adapters.node.node_scripts import Layout, ReleaseCommands
from edeliver.adapters.node.runtime_env_files import RuntimeEnvFiles
from edeliver.adapters.node.ssh_errors import RETRIES, backoff, ssh_error
from edeliver.adapters.node.ssh_output import log_script, run_bounded
from edeliver.adapters.node.transfer import Delivery
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import NodeError, StepTimeout
from edeliver.core.domain.model import Artifact
from edeliver.core.domain.redaction import Redactor
from edeliver.core.ports import NodeClaim

Progress = Callable[[str, int, int], None]  # node, bytes sent, total
Completed = asyncssh.SSHCompletedProcess
Runner = Callable[[str, asyncssh.SSHClientConnection], Awaitable[Completed]]
T = TypeVar("T")
_STOP_SECONDS = 15.0  # stopping a script cut short: a walk of /proc and one kill


@dataclass(frozen=True)
class NodeTimeouts:
    """A node's own limits (its environment's settings): one script, and waiting for a VM."""

    command: float
    verify: float


class NodeShellSettings(Protocol):
    """What a node's shell reads from the `AsyncsshNodeShells` that opened it."""

    channels: int
    commands: ReleaseCommands
    keep_releases: int
    stop_timeout: float
    poll_interval: float
    progress: Progress | None
    delivery: Delivery
    runtime_env: RuntimeEnvFiles | None
    expected: Artifact | None  # the release being rolled out, once told (`NodeShells.expect`)

    def timeouts_of(self, node: NodeConfig) -> NodeTimeouts: ...

    async def connect(self, node: NodeConfig) -> asyncssh.SSHClientConnection: ...

    async def checked_local_file(self, node: str, artifact: Artifact) -> Path: ...


class NodeConnection:
    """One node's connection and lock; the scripts run over it (public: the hot-upgrade shell
    and the node controls run their own)."""

    def __init__(
        self, node: NodeConfig, shells: NodeShellSettings, conn: asyncssh.SSHClientConnection
    ) -> None:
        self.name, self.node, self._shells, self._conn = node.name, node, shells, conn
        self._channels = asyncio.Semaphore(shells.channels)
        self.timeouts = shells.timeouts_of(node)
        self._claim: NodeClaim | None = None
        self._lock: NodeLock | None = None
        self._hide: Redactor | None = None  # the node's file secrets, once read

    def _layout(self, artifact: Artifact) -> Layout:
        try:
            return Layout(self.node.path, artifact.app)
        except ValueError as error:
            raise NodeError(f"{self.name}: {error}") from None

    async def lock_generation(self) -> int | None:
        """The lock generation a script that changes what runs must find on the node (None:
        nothing locked); the lock retaken first when its holder gave up (heartbeats late)."""
        if self._lock is not None and not self._lock.held:
            await self._take_lock()
        return self._lock.generation if self._lock else None

    async def script_output(
        self, script: str, doing: str = "", *, check: bool = True, limit: int = LIMIT
    ) -> str:
        """Run a node script; its stdout, after raising NodeError for a non-zero exit if `check`."""
        result = await self.run_script(script, limit=limit)
        if check:
            self._check(result, doing or "probing")
        return str(result.stdout)

    async def run_script(
        self, script: str, run: Runner | None = None, *, limit: int = LIMIT
    ) -> asyncssh.SSHCompletedProcess:
        """Run a node script to its end (by `run`, given the run's name and the connection,
        when it needs more than the script on stdin). A script cut short (by a step's timeout,
        or by the command timeout) is killed on the node with what it started: left running, a
        stale step could still switch or restart after the rollback that followed it. Output is
        kept to its last `limit` bytes (a release's listing needs more than a probe's)."""
        run_name = f"edeliver-run-{secrets.token_hex(8)}"
        timeout = self.timeouts.command
        log_script(self.name, script)

        def plain(name: str, conn: asyncssh.SSHClientConnection) -> Awaitable[Completed]:
            return run_bounded(conn, ns.named_remote_sh(name), script, limit)

        runner = run or plain
        try:
            async with asyncio.timeout(timeout):
                return await self._on_channel(
                    "running a script", lambda: runner(run_name, self._conn)
                )
        except TimeoutError:
            await self._stop_run(run_name)
            raise StepTimeout(
                f"{self.name}: a script ran longer than {timeout:g}s and was stopped"
            ) from None
        except asyncio.CancelledError:
            await self._stop_run(run_name)
            raise

    async def _stop_run(self, run_name: str) -> None:
        """Best effort, bounded: a lost connection may be why the script was cut short."""
        with suppress(asyncssh.Error, OSError, TimeoutError):
            async with asyncio.timeout(_STOP_SECONDS):
                stop = ns.stop_run_script(run_name)
                await run_bounded(self._conn, ns.REMOTE_SH, stop)

    async def _take_lock(self, then: str = "") -> None:
        """(Re)take the node's lock on this connection: after a reconnect, a new generation,
        so that a script still running from the lost connection can no longer switch. `then`:
        a read-only script run by the holder once it holds the lock (`NodeLock.said`)."""
        if self._claim is None:
            return
        expect = None
        if self._lock is not None:
            expect = self._lock.generation
            await self._lock.release()
        node = self.node
        try:
            self._lock = await NodeLock.take(
                self.name, self._conn, node.path, self._claim, expect, then
            )
        except (asyncssh.Error, OSError) as error:
            raise ssh_error(self.node, error, "taking the node's lock") from error

    def _check(
        self, result: asyncssh.SSHCompletedProcess, doing: str, said: str | None = None
    ) -> None:
        """NodeError for a non-zero exit, with its stderr, else its stdout (or `said`, the part
        of the stdout that is `doing`'s)."""
        if result.exit_status != 0:
            out = str(result.stdout or "") if said is None else said
            detail = (str(result.stderr or "").strip() or out.strip())[-2000:]
            raise NodeError(
                f"{self.name}: {doing} failed (exit {result.exit_status}): {detail or 'no output'}"
            )

    async def _on_channel(self, doing: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run `action` in a channel slot (reconnecting if the connection was lost), with
        refused channel opens retried with backoff and errors mapped to ours."""
        async with self._channels:
            for attempt in range(RETRIES):
                if self._conn.is_closed():
                    self._conn = await self._shells.connect(self.node)
                    await self._take_lock()
                try:
                    return await action()
                except asyncssh.ChannelOpenError as error:
                    if attempt + 1 == RETRIES:
                        raise ssh_error(self.node, error, doing) from error
                except (asyncssh.Error, OSError) as error:
                    raise ssh_error(self.node, error, doing) from error
                await backoff(attempt)
        raise AssertionError("unreachable")
