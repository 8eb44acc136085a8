"""The NodeControl port over asyncssh: the release a node runs, operated outside a deployment.

Start, stop and restart are the lifecycle script of a deployment (`switch_scripts.switch_script`)
with `current` left where it points: the same stop (the stop command, then signals), the same
start, under the node's lock generation, and the same health check as a deployment's verify.
Ping, eval and rpc read only: they take no lock.

Where a release's logs live: `mix release`'s `daemon` runs the VM under `run_erl`, which writes
the VM's console output (Logger's default console backend included) to
`<release root>/tmp/log/erlang.log.N` (N = 1..5, rotated; the newest is written to); what the
start and stop commands themselves print goes to `P/.edeliver/start.log`. `logs` reads both.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import asyncssh

from edeliver.adapters.node import command_scripts as cs
from edeliver.adapters.node import node_scripts as ns
from edeliver.adapters.node.health_scripts import health_script, parse_health
from edeliver.adapters.node.node_scripts import Layout
from edeliver.adapters.node.node_state import NodeState, parse_probe, probe_script
from edeliver.adapters.node.ssh import AsyncsshNodeShell, AsyncsshNodeShells, command_result
from edeliver.adapters.node.switch_scripts import Switch
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import NodeError
from edeliver.core.ports import CommandResult, Terminal


async def open_control(
    shells: AsyncsshNodeShells, node: NodeConfig, app: str
) -> AsyncsshNodeControl:
    """A NodeControl of `app` on `node`, over one verified connection."""
    try:
        layout = Layout(node.path, app)
    except ValueError as error:
        raise NodeError(f"{node.name}: {error}") from None
    return AsyncsshNodeControl(node, shells, await shells.connect(node), layout)


class AsyncsshNodeControl(AsyncsshNodeShell):
    """A node shell that also starts, stops, restarts, pings and evaluates in its release."""

    def __init__(
        self,
        node: NodeConfig,
        shells: AsyncsshNodeShells,
        conn: asyncssh.SSHClientConnection,
        layout: Layout,
    ) -> None:
        super().__init__(node, shells, conn)
        self.layout = layout

    async def start_release(self) -> str:
        state = await self._release_state()
        version = await self._current(state)
        if state.running == (version,):
            return f"{version} was running"
        if state.vms:
            raise NodeError(
                f"{self.name}: a VM of {', '.join(state.running)} runs while current is "
                f"{version}; `edeliver restart` boots {version}"
            )
        if not state.launching:
            await self._switch(self.layout, Switch(to=version), "starting")
        await self._wait_healthy(self.layout, version)
        return f"{version} started"

    async def stop_release(self) -> str:
        state = await self._release_state()
        if not state.vms and not state.launching:
            return "was not running"
        stop = Switch(state.vms, state.facts.current_version, False, launchers=state.launchers)
        await self._switch(self.layout, stop, "stopping")
        return f"{', '.join(state.running) or 'a booting VM'} stopped"

    async def restart_release(self) -> str:
        state = await self._release_state()
        version = await self._current(state)
        restart = Switch(state.vms, version, True, launchers=state.launchers)
        await self._switch(self.layout, restart, "restarting")
        await self._wait_healthy(self.layout, version)
        return f"{version} restarted"

    async def run_migration(self, function: str) -> str:
        result = await self.in_release("eval", f"{function}()")
        if result.status != 0:
            said = result.output.strip() or "no output"
            raise NodeError(f"{self.name}: {function}() failed (exit {result.status}): {said}")
        return result.output.strip() or f"{function}() done"

    async def ping(self) -> str:
        """The version the app runs, once its health check passes; NodeError saying why not."""
        script = health_script(self.layout, self._shells.commands)
        health = parse_health(await self.script_output(script, check=False))
        impostor = health.answered_by_another_vm()
        if health.running and health.code == 0 and impostor is None:
            return health.running[0]
        why = impostor or (health.said.strip().splitlines() or ["no answer"])[-1]
        raise NodeError(f"{self.name}: down ({why})")

    async def in_release(self, command: str, code: str) -> CommandResult:
        """`bin/<app> eval` or `rpc` of `code`, from the current release's root."""
        return command_result(
            await self.run_script(cs.release_command_script(self.layout, command, code))
        )

    async def log_lines(self, lines: int) -> str:
        """The last `lines` lines of the release's log (see the module's docstring)."""
        script = cs.release_log_script(self.layout, lines, follow=False)
        return await self.script_output(script, "reading the release's log")

    async def follow_log(
        self, lines: int, on_line: Callable[[str], None], following: Callable[[], None]
    ) -> None:
        """Call `on_line` with each line of the log, its last `lines` first, until cancelled;
        `following` once the node follows it. The node's `tail` is stopped when cancelled."""
        run_name = f"edeliver-run-{secrets.token_hex(8)}"
        script = cs.release_log_script(self.layout, lines, follow=True)
        try:
            result = await self._on_channel(
                "following the release's log",
                lambda: self._read_lines(run_name, script, on_line, following),
            )
        finally:
            await self._stop_run(run_name)
        self._check(result, "following the release's log")

    async def _read_lines(
        self,
        run_name: str,
        script: str,
        on_line: Callable[[str], None],
        following: Callable[[], None],
    ) -> asyncssh.SSHCompletedProcess:
        process = await self._conn.create_process(ns.named_remote_sh(run_name), errors="replace")
        process.stdin.write(script)
        process.stdin.write_eof()
        async for line in process.stdout:
            if line.rstrip("\n") == cs.FOLLOWING:
                following()
            else:
                on_line(line.rstrip("\n"))
        return await process.wait()

    async def console(self, terminal: Terminal) -> int:
        """`bin/<app> remote` of the current release on an SSH pty wired to `terminal` (file
        descriptors of our own, closed when the session ends); its exit status."""
        command = cs.remote_console_command(self.layout)
        try:
            process = await self._conn.create_process(
                command, term_type=terminal.term_type, term_size=terminal.size,
                stdin=terminal.stdin, stdout=terminal.stdout, stderr=terminal.stdout,
                encoding=None,
            )  # fmt: skip
            done = await process.wait()
        except (asyncssh.Error, OSError) as error:
            raise NodeError(f"{self.name}: the console failed: {error}") from error
        return done.exit_status if done.exit_status is not None else 255

    async def _release_state(self) -> NodeState:
        return parse_probe(await self.script_output(probe_script(self.layout)))

    async def _current(self, state: NodeState) -> str:
        """The version a start boots: `current`'s permanent one (a hot upgrade makes it newer
        than the root `current` names)."""
        version = state.facts.current_version
        if version is None or version not in state.facts.releases:
            raise NodeError(
                f"{self.name}: no complete release is current under {self.node.path}: "
                "deploy one first"
            )
        said = await self.script_output(cs.boot_version_script(self.layout), check=False)
        return said.strip() or version
