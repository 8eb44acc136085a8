"""The NodeShell port over asyncssh: full-release deploys to a node's deploy path (DESIGN §6).

One SSH connection per node carries every step; each step is one or two remote `sh` scripts
(`node_scripts`) plus SFTP for the upload. Host keys are always verified, against the given
known_hosts file or else the user's OpenSSH ones (~/.ssh/config's UserKnownHostsFile, else
~/.ssh/known_hosts); a config that turns checking off is ignored. sshd's defaults are
respected: at most `channels` sessions per connection (MaxSessions 10) and `connect_limit`
connects at once in flight (MaxStartups 10:30:100), both retried with backoff when refused.
Errors of asyncssh become ours in `_error` only.
"""

from __future__ import annotations

import asyncio
import posixpath
import random
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from edeliver.adapters.local.ssh_config import (
    DEFAULT_KNOWN_HOSTS,
    Hop,
    SshRoute,
    config_files,
    resolve,
)
from edeliver.adapters.node import node_scripts as ns
from edeliver.adapters.node.archive_check import listing_problems, refusal
from edeliver.adapters.node.node_lock import NodeLock, holder_script, parse_holder
from edeliver.adapters.node.node_scripts import Layout, NodeState, ReleaseCommands, Switch
from edeliver.adapters.node.runtime_env_files import RuntimeEnvFiles
from edeliver.adapters.node.sftp_upload import local_problems, send_file
from edeliver.adapters.node.ssh_host_keys import (
    HostKeyCatcher,
    KnownHosts,
    host_key_error,
    known_hosts_line,
    pin_host_key,
)
from edeliver.adapters.node.ssh_jumps import JumpPool
from edeliver.adapters.node.ssh_output import log_script, run_bounded, run_streaming
from edeliver.adapters.node.stream_install import stream_script, streaming_remote_sh
from edeliver.adapters.node.transfer import Delivery, FromLocation
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import (
    EdeliverError,
    HostKeyChanged,
    HostKeyError,
    NodeError,
    NodeUnreachable,
    StepTimeout,
    UsageError,
)
from edeliver.core.domain.model import Artifact, NodeFacts, Route
from edeliver.core.domain.redaction import Redactor
from edeliver.core.ports import CommandResult, NodeClaim, NodeLockHolder

__all__ = [
    "AsyncsshNodeShell",
    "AsyncsshNodeShells",
    "NodeTimeouts",
    "ReleaseCommands",
    "fetch_host_key",
    "pin_host_key",
]

Progress = Callable[[str, int, int], None]  # node, bytes sent, total
Completed = asyncssh.SSHCompletedProcess
Runner = Callable[[str, asyncssh.SSHClientConnection], Awaitable[Completed]]
T = TypeVar("T")
_RETRIES = 4
JUMP_HOST = "jump host"  # how errors name a ProxyJump hop
_STOP_SECONDS = 15.0  # stopping a script cut short: a walk of /proc and one kill
# Neither a VM nor its run_erl seen this long (they exist from the moment `daemon` returns
# until the VM exits): the release is not coming up.
_GONE_AFTER = 3.0
# A health poll waits on the node at most this long for the VM to register with epmd, so that
# the health command comes when the VM can answer it.
_READY_WAIT = 10.0


@dataclass(frozen=True)
class NodeTimeouts:
    """A node's own limits (its environment's settings): one script, and waiting for a VM."""

    command: float
    verify: float


def poll_pauses(longest: float, first: float = 0.05) -> Iterator[float]:
    """The pauses between polls: short at first, so that a quick answer is seen at once,
    doubling up to `longest`, so that a long wait costs few polls."""
    pause = first
    while True:
        yield min(pause, longest)
        pause *= 2


class AsyncsshNodeShells:
    """Opens one verified SSH connection per node and wraps it in an AsyncsshNodeShell;
    `node_timeouts` overrides `command_timeout` / `verify_timeout` node by node."""

    def __init__(
        self,
        known_hosts: str | None = None,
        commands: ReleaseCommands | None = None,
        keep_releases: int = 5,
        *,
        ssh_config: Sequence[str] | None = None,
        connect_limit: int = 8,
        channels: int = 8,
        connect_timeout: float = 20.0,
        command_timeout: float = 600.0,
        verify_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        poll_interval: float = 0.5,
        progress: Progress | None = None,
        delivery: Delivery | None = None,
        node_timeouts: Mapping[str, NodeTimeouts] | None = None,
        runtime_env: RuntimeEnvFiles | None = None,
    ) -> None:
        if keep_releases < 1:
            raise ValueError("keep_releases must be at least 1")
        self.known_hosts, self.commands = known_hosts, commands or ReleaseCommands()
        self.keep_releases, self.ssh_config = keep_releases, ssh_config
        self.channels, self.connect_timeout = channels, connect_timeout
        self.command_timeout, self.verify_timeout = command_timeout, verify_timeout
        self.stop_timeout, self.poll_interval, self.progress = stop_timeout, poll_interval, progress
        self._connects = asyncio.Semaphore(connect_limit)
        self._jumps = JumpPool()
        self.delivery: Delivery = delivery or FromLocation()
        self.node_timeouts = dict(node_timeouts or {})
        self.runtime_env = runtime_env  # None: the nodes get no runtime settings from us
        self._archive_checks: dict[tuple[str, str], list[str]] = {}
        self._checking = asyncio.Lock()

    def timeouts_of(self, node: NodeConfig) -> NodeTimeouts:
        default = NodeTimeouts(self.command_timeout, self.verify_timeout)
        return self.node_timeouts.get(node.name, default)

    async def checked_local_file(self, node: str, artifact: Artifact) -> Path:
        """The artifact's local file, once its entries are found safe to unpack: read here,
        once per file however many nodes ask, before any byte of it leaves this machine."""
        local = await self.delivery.local_file(artifact)
        key = (str(local), artifact.sha256)
        async with self._checking:
            if key not in self._archive_checks and local.is_file():
                problems = await asyncio.to_thread(local_problems, local, artifact)
                self._archive_checks[key] = problems
        if problems := self._archive_checks.get(key, []):
            raise NodeError(f"{node}: {problems[0]}; nothing was uploaded")
        return local

    async def open(self, node: NodeConfig) -> AsyncsshNodeShell:
        return AsyncsshNodeShell(node, self, await self.connect(node))

    async def connect(self, node: NodeConfig) -> asyncssh.SSHClientConnection:
        """Connect through the node's jump hosts, if any, each host key verified; retries;
        NodeUnreachable / HostKeyError naming the node, or the jump host at fault."""
        route = self.route(node)
        if not route.jumps:
            return await self._connect_hop(node, route.target, None)
        # Nodes behind the same bastions share one chain of jump connections.
        jumps = await self._jumps.acquire(route.jumps, lambda: self.open_jumps(node, route))
        conn = None
        try:
            conn = await self._connect_hop(node, route.target, jumps[-1])
            return conn
        finally:
            self._jumps.release_when_closed(route.jumps, jumps, conn)

    def route(self, node: NodeConfig) -> SshRoute:
        """Where the node is, per the ssh config, its toml values winning."""
        return resolve(node, self._config())

    async def open_jumps(
        self,
        node: NodeConfig,
        route: SshRoute,
        opened: list[asyncssh.SSHClientConnection] | None = None,
    ) -> list[asyncssh.SSHClientConnection]:
        """A verified connection to each jump host of the route, each through the one before
        (collected in `opened`: on a failure, its length is the index of the hop at fault)."""
        opened = [] if opened is None else opened
        try:
            for hop in route.jumps:
                named = replace(node, name=f"{JUMP_HOST} {hop.name} of {node.name}")
                opened.append(await self._connect_hop(named, hop, opened[-1] if opened else None))
        except BaseException:
            _close_all(opened)
            raise
        return opened

    async def _connect_hop(
        self, node: NodeConfig, hop: Hop, tunnel: asyncssh.SSHClientConnection | None
    ) -> asyncssh.SSHClientConnection:
        """One verified connection to `hop`, every setting explicit (the config is resolved)."""
        known = KnownHosts(self._known_hosts_files(hop))
        shown = replace(node, host=hop.host, port=hop.port, user=hop.user)
        keys = client_keys(node, hop)
        for attempt in range(_RETRIES):
            client = HostKeyCatcher()
            try:
                async with self._connects:
                    return await asyncssh.connect(
                        hop.host, hop.port, tunnel=tunnel, config=[], username=hop.user or (),
                        client_keys=keys or (),
                        known_hosts=known.match, client_factory=lambda c=client: c,
                        connect_timeout=hop.connect_timeout or self.connect_timeout,
                        keepalive_interval=15, keepalive_count_max=3,
                    )  # fmt: skip
            except (asyncssh.Error, OSError) as error:
                if not (_retryable(error) and attempt + 1 < _RETRIES):
                    raise _error(
                        shown, error, "connecting", known, client.offered, hop, tunnel is not None
                    ) from error
            await _backoff(attempt)
        raise AssertionError("unreachable")

    def _config(self) -> list[str]:
        if self.ssh_config is not None:
            return list(self.ssh_config)
        return config_files(None, Path.cwd())

    def _known_hosts_files(self, hop: Hop) -> list[str]:
        if self.known_hosts is not None:
            return [self.known_hosts]
        return list(hop.known_hosts) or [str(Path(DEFAULT_KNOWN_HOSTS).expanduser())]


def client_keys(node: NodeConfig, hop: Hop) -> Sequence[asyncssh.SSHKeyPair]:
    """The hop's identity files, loaded before connecting so that a missing, passphrase-protected
    or malformed one is one line naming the node and the file (asyncssh names neither); none
    given: the agent and the default keys, as ssh does."""
    keys: list[asyncssh.SSHKeyPair] = []
    for path in hop.identity_files:
        try:
            keys.extend(asyncssh.load_keypairs(path))
        except (asyncssh.KeyImportError, OSError) as error:
            raise UsageError(f"{node.name}: identity_file {path}: {_unusable(error)}") from None
    return keys


def _unusable(error: asyncssh.KeyImportError | OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, OSError):
        return f"cannot be read ({error.strerror or error})"
    if "passphrase" in str(error).lower():
        return (
            "the key is passphrase-protected and Edeliver asks for no passphrase: add it to "
            "ssh-agent and leave identity_file out, or use a key without one"
        )
    return f"not a private key ({error})"


def _close_all(conns: Sequence[asyncssh.SSHClientConnection]) -> None:
    for conn in reversed(conns):
        conn.close()


class AsyncsshNodeShell:
    """The lifecycle steps on one node, over one connection; every step is idempotent."""

    def __init__(
        self, node: NodeConfig, shells: AsyncsshNodeShells, conn: asyncssh.SSHClientConnection
    ) -> None:
        self.name, self.node, self._shells, self._conn = node.name, node, shells, conn
        self._channels = asyncio.Semaphore(shells.channels)
        self.timeouts = shells.timeouts_of(node)
        self._claim: NodeClaim | None = None
        self._lock: NodeLock | None = None
        self._hide: Redactor | None = None  # the node's file secrets, once read

    # -- the port ----------------------------------------------------------------------------

    async def hold(self, claim: NodeClaim) -> None:
        if claim == self._claim and self._lock is not None and self._lock.held:
            return
        self._claim = claim
        await self._take_lock()
        if self._shells.runtime_env is not None:
            await self._shells.runtime_env.learn_cookie(
                self.script_output, self.node.path, claim.environment, self.name
            )

    async def write_runtime_env(self) -> None:
        """Write the app's runtime settings of the claiming deployment's environment."""
        if self._shells.runtime_env is not None and self._claim is not None:
            await self._shells.runtime_env.write(
                self.script_output, self.node.path, self._claim.environment, self.name
            )
            self._hide = None  # the files may have come since: read them again

    async def _hidden(self, done: asyncssh.SSHCompletedProcess) -> CommandResult:
        """A command's result with the node's file secrets masked, as the deployer's are."""
        runtime, result = self._shells.runtime_env, command_result(done)
        if runtime is None or self._claim is None:
            return result
        if self._hide is None:
            self._hide = await runtime.hiding_file_secrets(
                self.script_output, self.node.path, self._claim.environment, self.name
            )
        return CommandResult(result.status, self._hide(result.output))

    async def lock_holder(self) -> NodeLockHolder | None:
        said = await self.script_output(holder_script(self.node.path), "reading the node's lock")
        return parse_holder(self.name, said)

    async def probe(self) -> NodeFacts:
        return (await self._state()).facts

    def take_route(self, route: Route) -> None:
        """A full release has one route only."""

    async def prepare(self, artifact: Artifact, *, unpack: bool = True) -> None:
        """Upload and verify; a full release (`unpack`) pushed whole is unpacked as it comes."""
        layout = self._layout(artifact)
        fetch = await self._shells.delivery.fetch_command(artifact)
        # A push is checked before anything touches the node; a pull, on the node at install.
        local = (
            await self._shells.checked_local_file(self.name, artifact) if fetch is None else None
        )
        said = await self.script_output(
            ns.upload_state_script(layout, artifact.version, artifact.sha256)
        )
        if said.strip() == "done":
            return
        offset = int(said.partition("partial=")[2] or 0)
        if fetch is None and offset == 0 and unpack:
            assert local is not None
            return await self._stream(layout, artifact, local)
        if fetch is None:  # a partial upload left by a lost connection: resumed, then unpacked
            assert local is not None
            await self._upload(artifact, local, layout.upload(artifact.version), offset)
        else:
            await self._fetch(layout, artifact, fetch)
        finish = ns.finish_upload_script(layout, artifact.version, artifact.sha256)
        result = await self.run_script(finish)
        if result.exit_status == 4:
            raise NodeError(self._mismatch(artifact, str(result.stdout).strip()))
        self._check(result, f"verifying the upload of {artifact.name}")

    async def install(self, artifact: Artifact) -> None:
        layout = self._layout(artifact)
        said = await self.script_output(ns.install_state_script(layout, artifact.version))
        state, _, listing = said.partition("\n")
        if state == "missing":
            raise NodeError(f"{self.name}: {artifact.name} was not uploaded: run prepare first")
        upload, v = layout.upload(artifact.version), artifact.version
        if state == "streamed":  # unpacked as it came: checked, then renamed into place
            unpacked = f"{layout.path}/releases/.{v}.partial"
            await self._refuse_unsafe(listing, upload, artifact, unpacked)
            await self.script_output(ns.place_script(layout, v), f"installing {artifact.name}")
        elif state != "installed":
            await self._refuse_unsafe(listing, upload, artifact)
            await self.script_output(ns.unpack_script(layout, v), f"unpacking {artifact.name}")
        # After the unpack, so that the new release's COOKIE is the environment's too.
        await self.write_runtime_env()

    async def activate(self, artifact: Artifact) -> None:
        layout, v = self._layout(artifact), artifact.version
        state = await self._state()
        if state.facts.current_version == v and state.running == (v,):
            return
        if v not in state.facts.releases:
            raise NodeError(f"{self.name}: release {v} is not installed: run install first")
        old = state.facts.current_version
        # Re-run after the switch: the previous one is the one recorded when switching to v.
        recorded = state.last.get("previous") if state.last.get("version") == v else None
        previous = old if old != v else recorded or None
        record = ("activate", v, previous or "", artifact.sha256) if old != v else None
        newest_first = (v, *(r for r in state.releases_by_age if r != v))
        # A hot-upgraded VM boots a newer version from an older root: keep the roots VMs run from.
        roots = (posixpath.basename(vm.root) for vm in state.vms)
        keep = {v, *state.running, *roots, *([previous] if previous else [])}
        remove = ns.prune(newest_first, self._shells.keep_releases, keep)
        back = previous if previous in state.facts.releases else None
        switch = Switch(state.vms, v, True, record, tuple(remove), state.launchers, back)
        await self._switch(layout, switch, "activating")

    async def verify(self, artifact: Artifact) -> None:
        await self._wait_healthy(self._layout(artifact), artifact.version)

    async def roll_back(self, artifact: Artifact, previous: str | None) -> None:
        """Switch back to `previous` (or empty the node) and verify it. A node that cannot be
        reached raises NodeUnreachable marked `passing`: the deployment waits it out
        (`orchestrator.until_reachable`), its rollback tasks included."""
        layout, v = self._layout(artifact), artifact.version
        state = await self._state()
        remove = () if v == previous else (v,)
        record = ("roll_back", previous or "", "", "")
        if previous is None:
            switch = Switch(state.vms, None, False, record, remove, state.launchers)
        elif previous not in state.facts.releases:
            raise NodeError(f"{self.name}: cannot roll back to {previous}: it is not on the node")
        else:
            done = state.facts.current_version == previous and state.running == (previous,)
            stop, launchers = ((), ()) if done else (state.vms, state.launchers)
            switch = Switch(stop, previous, not done, record, remove, launchers)
        switch = replace(switch, getting_back=True)
        await self._switch(layout, switch, f"rolling back to {previous or 'nothing'}")
        if previous is not None:
            await self._wait_healthy(layout, previous)

    async def run_command(self, script: str, env: Mapping[str, str]) -> CommandResult:
        return await self._hidden(
            await self.run_script(ns.task_script(self.node.path, env, script))
        )

    async def eval_elixir(
        self, artifact: Artifact, code: str, env: Mapping[str, str]
    ) -> CommandResult:
        layout = self._layout(artifact)
        return await self._hidden(
            await self.run_script(ns.eval_script(layout, artifact.version, code, env))
        )

    async def check_upload(self, upload: str, artifact: Artifact) -> None:
        """Refuse (and delete) the uploaded archive `upload` if an entry of it is unsafe."""
        listing = await self.script_output(ns.listing_script(upload), f"listing {artifact.name}")
        await self._refuse_unsafe(listing, upload, artifact)

    async def close(self) -> None:
        if self._lock is not None:
            await self._lock.release()
            self._lock = None
        self._conn.close()
        with suppress(Exception):
            await self._conn.wait_closed()

    # -- steps' parts ------------------------------------------------------------------------

    def _layout(self, artifact: Artifact) -> Layout:
        try:
            return Layout(self.node.path, artifact.app)
        except ValueError as error:
            raise NodeError(f"{self.name}: {error}") from None

    async def _refuse_unsafe(
        self, listing: str, upload: str, artifact: Artifact, unpacked: str | None = None
    ) -> None:
        if problems := listing_problems(listing.splitlines()):
            remove = ns.remove_upload_script(upload, unpacked)
            await self.script_output(remove, "removing a refused upload")
            why = refusal(artifact.name, artifact.version, problems)
            raise NodeError(f"{self.name}: {why}; the upload was deleted")

    async def _state(self) -> NodeState:
        # The probe reads no app-specific path: any valid app name will do.
        return ns.parse_probe(
            await self.script_output(ns.probe_script(Layout(self.node.path, "app")))
        )

    async def _switch(self, layout: Layout, switch: Switch, doing: str) -> None:
        shells = self._shells
        generation = await self.lock_generation()
        script = ns.switch_script(layout, shells.commands, switch, shells.stop_timeout, generation)
        await self.script_output(script, doing)

    async def lock_generation(self) -> int | None:
        """The lock generation a script that changes what runs must find on the node (None:
        nothing locked); the lock retaken first when its holder gave up (heartbeats late)."""
        if self._lock is not None and not self._lock.held:
            await self._take_lock()
        return self._lock.generation if self._lock else None

    async def _wait_healthy(self, layout: Layout, version: str) -> None:
        """Poll until one VM runs `version` and the health command passes; else fail with logs."""
        loop, shells = asyncio.get_running_loop(), self._shells
        deadline = seen = loop.time()
        deadline += self.timeouts.verify
        pause = poll_pauses(shells.poll_interval)
        while True:
            # Stamped when the poll starts: under load one poll can take seconds, and a VM seen
            # by it was there at its start, not at its end.
            polled_at = loop.time()
            wait = min(_READY_WAIT, max(0.0, deadline - polled_at))
            script = ns.health_script(layout, shells.commands, wait)
            health = ns.parse_health(await self.script_output(script, check=False))
            impostor = health.answered_by_another_vm()
            if health.running == (version,) and health.code == 0 and impostor is None:
                return
            now = loop.time()
            seen = polled_at if health.running or health.launching else seen
            why = (
                f"current is {health.current or 'missing'}" if health.current != version
                else "no VM runs" if polled_at - seen > _GONE_AFTER
                else impostor or f"not healthy after {self.timeouts.verify:g}s" if now > deadline
                else None
            )  # fmt: skip
            if why:
                raise NodeError(await self._unhealthy(layout, version, health, why))
            await asyncio.sleep(next(pause))

    async def _unhealthy(self, layout: Layout, version: str, health: ns.Health, why: str) -> str:
        log = await self.script_output(ns.log_tail_script(layout), check=False)
        return (
            f"{self.name}: {version} did not come up ({why}; running: "
            f"{', '.join(health.running) or 'nothing'}); health check said:\n"
            f"{health.said or '(nothing)'}\nlog {log.strip() or '(none found)'}"
        )

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

    async def _stream(self, layout: Layout, artifact: Artifact, local: Path) -> None:
        """Push the release and unpack it as it arrives (see `stream_install`): the node's
        install is one pass over its bytes."""
        if not local.is_file():
            raise NodeError(f"{self.name}: {artifact.name} is not at {artifact.location!r}")
        size, v = local.stat().st_size, artifact.version
        script = stream_script(layout, v, artifact.sha256, size)
        result = await self.run_script(
            script, lambda run_name, conn: run_streaming(
                conn, streaming_remote_sh(run_name), script, local, self._sent(size)
            ),
        )  # fmt: skip
        if result.exit_status == 4:
            raise NodeError(self._mismatch(artifact, str(result.stdout).strip()))
        if result.exit_status == 7:
            error = NodeError(f"{self.name}: uploading {artifact.name} failed")
            partial = layout.upload(v) + ".partial"
            raise NodeError(await self._failed_upload(partial, artifact, error))
        self._check(result, f"uploading and unpacking {artifact.name}")

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
        result = await self.run_script(ns.fetch_script(layout, artifact.version, fetch))
        if result.exit_status == 7:
            partial = layout.upload(artifact.version) + ".partial"
            space = ns.parse_failed_upload(str(result.stdout))
            detail = str(result.stderr or "").strip()[-1000:] or "no output"
            error = f"{self.name}: fetching {artifact.name} from the store failed: {detail}"
            raise NodeError(self._upload_failure(space, partial, artifact, error))
        self._check(result, f"fetching {artifact.name} from the store")

    async def _failed_upload(self, partial: str, artifact: Artifact, error: NodeError) -> str:
        """Remove the partial upload; the message: a full disk named as such, else `error`."""
        said = await self.script_output(ns.failed_upload_script(partial), check=False)
        return self._upload_failure(ns.parse_failed_upload(said), partial, artifact, str(error))

    def _upload_failure(
        self, space: ns.UploadSpace | None, partial: str, artifact: Artifact, error: str
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

    # -- running scripts (public: the hot-upgrade shell runs its own over this connection) -----

    async def script_output(self, script: str, doing: str = "", *, check: bool = True) -> str:
        """Run a node script; its stdout, after raising NodeError for a non-zero exit if `check`."""
        result = await self.run_script(script)
        if check:
            self._check(result, doing or "probing")
        return str(result.stdout)

    async def run_script(
        self, script: str, run: Runner | None = None
    ) -> asyncssh.SSHCompletedProcess:
        """Run a node script to its end (by `run`, given the run's name and the connection,
        when it needs more than the script on stdin). A script cut short (by a step's timeout,
        or by the command timeout) is killed on the node with what it started: left running, a
        stale step could still switch or restart after the rollback that followed it."""
        run_name = f"edeliver-run-{secrets.token_hex(8)}"
        timeout = self.timeouts.command
        log_script(self.name, script)

        def plain(name: str, conn: asyncssh.SSHClientConnection) -> Awaitable[Completed]:
            return run_bounded(conn, ns.named_remote_sh(name), script)

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

    async def _take_lock(self) -> None:
        """(Re)take the node's lock on this connection: after a reconnect, a new generation,
        so that a script still running from the lost connection can no longer switch."""
        if self._claim is None:
            return
        expect = None
        if self._lock is not None:
            expect = self._lock.generation
            await self._lock.release()
        node = self.node
        try:
            self._lock = await NodeLock.take(self.name, self._conn, node.path, self._claim, expect)
        except (asyncssh.Error, OSError) as error:
            raise _error(self.node, error, "taking the node's lock") from error

    def _check(self, result: asyncssh.SSHCompletedProcess, doing: str) -> None:
        if result.exit_status != 0:
            detail = (str(result.stderr or "").strip() or str(result.stdout or "").strip())[-2000:]
            raise NodeError(
                f"{self.name}: {doing} failed (exit {result.exit_status}): {detail or 'no output'}"
            )

    async def _on_channel(self, doing: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run `action` in a channel slot (reconnecting if the connection was lost), with
        refused channel opens retried with backoff and errors mapped to ours."""
        async with self._channels:
            for attempt in range(_RETRIES):
                if self._conn.is_closed():
                    self._conn = await self._shells.connect(self.node)
                    await self._take_lock()
                try:
                    return await action()
                except asyncssh.ChannelOpenError as error:
                    if attempt + 1 == _RETRIES:
                        raise _error(self.node, error, doing) from error
                except (asyncssh.Error, OSError) as error:
                    raise _error(self.node, error, doing) from error
                await _backoff(attempt)
        raise AssertionError("unreachable")


# -- host keys ---------------------------------------------------------------------------------


def command_result(done: asyncssh.SSHCompletedProcess) -> CommandResult:
    """A finished remote script as a task command's result, its stderr after its stdout."""
    said = str(done.stdout or "") + str(done.stderr or "")
    return CommandResult(done.exit_status if done.exit_status is not None else 255, said)


async def fetch_host_key(
    node: NodeConfig, ssh_config: Sequence[str] | None = None, known_hosts: str | None = None
) -> tuple[str, str, str]:
    """The first host key on the node's route that is not pinned yet, a jump host's before the
    node's: whose it is, its known_hosts line and its fingerprint, for the user to confirm.
    Fetched through the hops before it, whose keys are verified; a changed key is refused."""
    shells = AsyncsshNodeShells(known_hosts, ssh_config=ssh_config)
    route = shells.route(node)
    reached: list[asyncssh.SSHClientConnection] = []
    try:
        jumps = await shells.open_jumps(node, route, reached)
        hop, whose = route.target, node.name
    except HostKeyError as error:
        if isinstance(error, HostKeyChanged):
            raise
        hop = route.jumps[len(reached)]
        whose = f"{JUMP_HOST} {hop.name} of {node.name}"
        jumps = await shells.open_jumps(node, replace(route, jumps=route.jumps[: len(reached)]))
    try:
        key = await asyncssh.get_server_host_key(
            hop.host, hop.port, tunnel=jumps[-1] if jumps else None, config=[]
        )
    except (asyncssh.Error, OSError) as error:
        shown = replace(node, name=whose, host=hop.host, port=hop.port, user=hop.user)
        raise _error(shown, error, "fetching its host key", hop=hop) from error
    finally:
        _close_all(jumps)
    if key is None:
        raise NodeUnreachable(f"{whose} ({hop.address}) offered no host key")
    return whose, known_hosts_line(hop.host, hop.port, key), key.get_fingerprint()


# -- errors ------------------------------------------------------------------------------------


def _error(
    node: NodeConfig,
    error: BaseException,
    doing: str,
    known: KnownHosts | None = None,
    offered: asyncssh.SSHKey | None = None,
    hop: Hop | None = None,
    tunnelled: bool = False,
) -> EdeliverError:
    """The one place where asyncssh's and the OS's errors become ours."""
    where = f"{node.name} ({node.address})"
    if isinstance(error, asyncssh.HostKeyNotVerifiable):
        return host_key_error(where, known, offered)  # `nodes trust` pins jump hosts' too
    if isinstance(error, socket.gaierror) and hop is not None and not hop.from_config:
        return NodeUnreachable(
            f"{where}: {hop.name!r} is no Host of the ssh config and no known host name "
            f"({error.strerror})"
        )
    if isinstance(error, asyncssh.ChannelOpenError) and tunnelled:
        return NodeUnreachable(f"{where}: the jump host before it cannot reach it: {error.reason}")
    for kind, ours, say in _MAPPING:
        if isinstance(error, kind):
            made = ours(f"{where}: {say(error, doing, node)}")
            if isinstance(made, NodeUnreachable):
                made.passing = _lost(error)  # a rollback waits such a node out
            return made
    return NodeError(f"{where}: {doing} failed: {error}")


_Say = Callable[[Any, str, NodeConfig], str]
_Kinds = type[BaseException] | tuple[type[BaseException], ...]
# First match wins. Scripts are timed by `run_script` itself (so that it can stop them on the
# node), never by asyncssh, so asyncssh's TimeoutError does not arise here.
_MAPPING: tuple[tuple[_Kinds, type[NodeError], _Say], ...] = (
    (asyncssh.PermissionDenied, NodeUnreachable,
     lambda e, _, n: f"authentication as {n.user or 'the default user'} failed: {e.reason}"),
    (asyncssh.ProcessError, NodeError,
     lambda e, doing, _: f"{doing} failed (exit {e.exit_status}): {e.stderr!s}"),
    (asyncssh.ChannelOpenError, NodeUnreachable,
     lambda e, doing, _: f"{doing}: the node refused a new session: {e.reason}"),
    ((asyncssh.DisconnectError, asyncssh.SFTPConnectionLost), NodeUnreachable,
     lambda e, doing, _: f"connection lost while {doing}: {e}"),
    (asyncssh.SFTPError, NodeError, lambda e, doing, _: f"{doing}: SFTP error: {e.reason}"),
    (TimeoutError, NodeUnreachable, lambda e, doing, _: f"timed out {doing}"),
    (OSError, NodeUnreachable, lambda e, doing, _: f"cannot connect: {e.strerror or e}"),
)  # fmt: skip


def _lost(cause: BaseException) -> bool:
    """The node could not be reached or the connection dropped (not a refused login or a
    refused session): what a rebooting node or a restarting sshd looks like."""
    lost = OSError | asyncssh.DisconnectError | asyncssh.SFTPConnectionLost
    return isinstance(cause, lost) and not isinstance(cause, asyncssh.PermissionDenied)


def _retryable(error: BaseException) -> bool:
    """Refusals a busy sshd gives (MaxStartups drops, resets), worth another try."""
    lost = asyncssh.ConnectionLost | asyncssh.ChannelOpenError | ConnectionResetError
    return isinstance(error, lost)


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(0.2 * 2**attempt * (1 + random.random()))  # noqa: S311  jitter only
