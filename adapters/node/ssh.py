"""The NodeShell port over asyncssh: full-release deploys to a node's deploy path (DESIGN §6).

One SSH connection per node carries every step; a step is one remote `sh` script when it can
be (a streamed prepare is two: the upload's state, then the stream; an install whose listing
was not read yet, and an activation whose node changed since the install, are two), plus, for
a resumed upload, SFTP. The shell is built in layers, each a module: connecting
(`ssh_connect`, errors mapped in `ssh_errors`), running scripts on the connection
(`ssh_channel`), upload and install (`ssh_install`), the wait for a healthy release
(`ssh_health`); here, the port's steps that read the node's state and switch what runs.
sshd's defaults are respected: at most `channels` sessions per connection (MaxSessions 10) and
`connect_limit` connects at once in flight (MaxStartups 10:30:100), both retried with backoff
when refused.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path

import asyncssh

from edeliver.adapters.node import command_scripts as cs
from edeliver.adapters.node.node_lock import holder_script, parse_holder
from edeliver.adapters.node.node_scripts import Layout, ReleaseCommands
from edeliver.adapters.node.node_state import NodeState, parse_probe, probe_script
from edeliver.adapters.node.runtime_env_files import RuntimeEnvFiles, read_cookie_script
from edeliver.adapters.node.sftp_upload import local_problems
from edeliver.adapters.node.ssh_channel import NodeTimeouts, Progress
from edeliver.adapters.node.ssh_connect import SshConnections
from edeliver.adapters.node.ssh_health import HealthWaits
from edeliver.adapters.node.ssh_host_keys import pin_host_key
from edeliver.adapters.node.ssh_install import ReleaseInstall
from edeliver.adapters.node.switch_scripts import (
    STALE,
    Switch,
    Unchanged,
    prune,
    switch_script,
)
from edeliver.adapters.node.transfer import Delivery, FromLocation
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import NodeError
from edeliver.core.domain.model import Artifact, NodeFacts, Route
from edeliver.core.ports import CommandResult, NodeClaim, NodeLockHolder

# How long a probe run by the lock's holder (`hold`) stands for the probe that follows (the
# preflight's, once every node is held): the node is held from before it, so only its VM itself
# (a crash) can change what it said; a later probe asks again.
HELD_PROBE_FRESH = 30.0


@dataclass(frozen=True)
class HeldProbe:
    """What the probe run by the lock's holder printed: with the read-only script `then` that
    followed its report, and when (the event loop's clock)."""

    then: str
    said: str
    at: float


def held_reads(cookie: str, probe: str) -> str:
    """The lock holder's `then`: the cookie read, then the probe in a subshell of its own and
    its exit code (`split_held_reads` takes them apart)."""
    if not probe:
        return cookie
    return f'{cookie}echo part=probe\n(\n{probe}); echo "probe_rc=$?"\n'


def split_held_reads(said: str) -> tuple[str, str | None]:
    """What the cookie read printed, and what the probe printed when it exited 0 (else None:
    the probe is run again on its own, for its error to be seen)."""
    cookie, marker, rest = said.partition("part=probe\n")
    if not marker:
        return said, None
    probed, _, code = rest.rpartition("probe_rc=")
    return cookie, probed if code.strip() == "0" else None


__all__ = [
    "AsyncsshNodeShell",
    "AsyncsshNodeShells",
    "NodeTimeouts",
    "ReleaseCommands",
    "pin_host_key",
]


class AsyncsshNodeShells(SshConnections):
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
        super().__init__(
            known_hosts,
            ssh_config=ssh_config,
            connect_limit=connect_limit,
            connect_timeout=connect_timeout,
        )
        self.commands, self.keep_releases, self.channels = (
            commands or ReleaseCommands(),
            keep_releases,
            channels,
        )
        self.command_timeout, self.verify_timeout = command_timeout, verify_timeout
        self.stop_timeout, self.poll_interval, self.progress = stop_timeout, poll_interval, progress
        self.delivery: Delivery = delivery or FromLocation()
        self.node_timeouts = dict(node_timeouts or {})
        self.runtime_env = runtime_env  # None: the nodes get no runtime settings from us
        self._archive_checks: dict[tuple[str, str], list[str]] = {}
        self._checking = asyncio.Lock()
        self._checks_ahead: dict[str, asyncio.Task[None]] = {}
        self.expected: Artifact | None = None  # the release a probe also reads the upload of

    def timeouts_of(self, node: NodeConfig) -> NodeTimeouts:
        default = NodeTimeouts(self.command_timeout, self.verify_timeout)
        return self.node_timeouts.get(node.name, default)

    def expect(self, artifact: Artifact) -> None:
        """Check a pushed release's local archive now, beside the connects, locks and probes
        (network waits), instead of on the first prepare's path. Each probe then also reads
        what the node holds at its upload path, sparing a prepare that script."""
        self.expected = artifact
        if artifact.sha256 not in self._checks_ahead:
            ahead = asyncio.get_running_loop().create_task(self._check_ahead(artifact))
            self._checks_ahead[artifact.sha256] = ahead

    async def _check_ahead(self, artifact: Artifact) -> None:
        with suppress(Exception):  # told again, with its node, by the prepare that needs it
            if await self.delivery.fetch_command(artifact) is None:
                await self._archive_problems(artifact)

    async def checked_local_file(self, node: str, artifact: Artifact) -> Path:
        """The artifact's local file, once its entries are found safe to unpack: read once
        per file however many nodes ask, before any byte of it leaves this machine."""
        local, problems = await self._archive_problems(artifact)
        if problems:
            raise NodeError(f"{node}: {problems[0]}; nothing was uploaded")
        return local

    async def _archive_problems(self, artifact: Artifact) -> tuple[Path, list[str]]:
        local = await self.delivery.local_file(artifact)
        key = (str(local), artifact.sha256)
        async with self._checking:
            if key not in self._archive_checks and local.is_file():
                problems = await asyncio.to_thread(local_problems, local, artifact)
                self._archive_checks[key] = problems
        return local, self._archive_checks.get(key, [])

    async def open(self, node: NodeConfig) -> AsyncsshNodeShell:
        return AsyncsshNodeShell(node, self, await self.connect(node))


class AsyncsshNodeShell(ReleaseInstall, HealthWaits):
    """The lifecycle steps on one node, over one connection; every step is idempotent."""

    # -- the port ----------------------------------------------------------------------------

    _held_probe: HeldProbe | None = None

    async def hold(self, claim: NodeClaim, probe_then: str = "") -> None:
        """Lock the node for `claim`. Once it holds the lock, the holder reads the cookie the
        node keeps (when the deployer gives none) and, in a rollout (a release expected), runs
        the probe that comes next, with `probe_then` after its report (see `probe_then`): a
        round trip each less."""
        if claim == self._claim and self._lock is not None and self._lock.held:
            return
        self._claim = claim
        runtime = self._shells.runtime_env
        cookie = runtime is not None and runtime.asks_cookie(claim.environment, self.name)
        probe = self._probe_script(probe_then) if self._shells.expected else ""
        await self._take_lock(
            held_reads(read_cookie_script(self.node.path) if cookie else "", probe)
        )
        kept, probed = split_held_reads(self._lock.said if self._lock is not None else "")
        if probe and probed is not None:
            now = asyncio.get_running_loop().time()
            self._held_probe = HeldProbe(probe_then, probed, now)
        if runtime is not None and cookie:
            await runtime.take_kept_cookie(kept, claim.environment, self.name)

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
        return (await self.probe_then(""))[0]

    async def probe_then(self, then: str) -> tuple[NodeFacts, str]:
        """The probe, then the read-only script `then` in the same round trip (after the
        probe's report, with its variables and functions): the facts, and all it printed. The
        first after a `hold` that ran it (with the same `then`) is what the holder printed."""
        held, self._held_probe = self._held_probe, None
        now = asyncio.get_running_loop().time()
        if held is not None and held.then == then and now - held.at <= HELD_PROBE_FRESH:
            said = held.said
        else:
            said = await self.script_output(self._probe_script(then))
        self._probed = parse_probe(said)
        return self._probed.facts, said

    def _probe_script(self, then: str) -> str:
        """The probe, with what is at the upload path of the release a rollout expects."""
        expected = self._shells.expected
        upload = self._layout(expected).upload(expected.version) if expected else None
        return self._report_script(upload) + then

    def take_route(self, route: Route) -> None:
        """A full release has one route only."""

    async def activate(self, artifact: Artifact) -> None:
        """One script when the install just read the node's state and the node still shows it
        (else the state read again, and a switch planned from it)."""
        layout, v = self._layout(artifact), artifact.version
        installed, self._installed = self._installed, None
        if installed is not None and installed[0] == v and v in installed[1].facts.releases:
            state = installed[1]
            switch = self._activation(state, artifact)
            if switch is None or await self._switch(layout, switch, "activating", state):
                return
        switch = self._activation(await self._state(), artifact)
        if switch is not None:
            await self._switch(layout, switch, "activating")

    def _activation(self, state: NodeState, artifact: Artifact) -> Switch | None:
        """The switch that activates `artifact` on a node in `state`; None: it runs already."""
        v = artifact.version
        if state.facts.current_version == v and state.running == (v,):
            return None
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
        remove = prune(newest_first, self._shells.keep_releases, keep)
        back = previous if previous in state.facts.releases else None
        return Switch(state.vms, v, True, record, tuple(remove), state.launchers, back)

    async def verify(self, artifact: Artifact) -> None:
        await self._wait_healthy(self._layout(artifact), artifact.version)

    async def roll_back(self, artifact: Artifact, previous: str | None) -> None:
        """Switch back to `previous` (or empty the node) and verify it. A node that cannot be
        reached raises NodeUnreachable marked `passing`: the deployment waits it out
        (`orchestrator.until_reachable`), its rollback tasks included."""
        layout, v = self._layout(artifact), artifact.version
        self._installed = None  # what runs is read anew: a rollback plans from nothing older
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
            await self.run_script(cs.task_script(self.node.path, env, script))
        )

    async def eval_elixir(
        self, artifact: Artifact, code: str, env: Mapping[str, str]
    ) -> CommandResult:
        layout = self._layout(artifact)
        return await self._hidden(
            await self.run_script(cs.eval_script(layout, artifact.version, code, env))
        )

    async def close(self) -> None:
        if self._lock is not None:
            await self._lock.release()
            self._lock = None
        self._conn.close()
        with suppress(Exception):
            await self._conn.wait_closed()

    # -- steps' parts ------------------------------------------------------------------------

    async def _state(self) -> NodeState:
        return parse_probe(await self.script_output(self._report_script(None)))

    def _report_script(self, upload: str | None) -> str:
        # The probe reads no app-specific path but `upload`: any valid app name will do.
        return probe_script(Layout(self.node.path, "app"), upload)

    async def _switch(
        self, layout: Layout, switch: Switch, doing: str, planned_from: NodeState | None = None
    ) -> bool:
        """Run the switch; False, with nothing done, when the node no longer shows the state
        `planned_from` (given when that state was read by an earlier step's script)."""
        shells = self._shells
        generation = await self.lock_generation()
        unchanged = Unchanged.of(planned_from) if planned_from is not None else None
        script = switch_script(
            layout, shells.commands, switch, shells.stop_timeout, generation, unchanged
        )
        result = await self.run_script(script)
        if unchanged is not None and result.exit_status == STALE:
            return False
        self._check(result, doing)
        return True


def command_result(done: asyncssh.SSHCompletedProcess) -> CommandResult:
    """A finished remote script as a task command's result, its stderr after its stdout."""
    said = str(done.stdout or "") + str(done.stderr or "")
    return CommandResult(done.exit_status if done.exit_status is not None else 255, said)
