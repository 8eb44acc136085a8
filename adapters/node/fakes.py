"""In-memory fakes of the node ports, with scriptable faults; the contract tests hold them to
the truth.

`FakeHost` is a simulated node: the releases on its disk, where `current` points, what runs.
`InMemoryNodeShells` opens shells on such hosts and injects faults per (node, step): fail the
step (after doing what a real step would have half done), hang until the step times out, or lose
the connection. Every step call is appended to a shared `trace`, so tests can check what started
when. The other ports' fakes live beside their real adapters: `memory_store.InMemoryReleaseStore`,
`clock.FakeClock`, `event_store_faults` (a deployer that dies mid-write, a store that fails).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Literal

from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import LockHeldError, NodeError, NodeUnreachable
from edeliver.core.domain.model import Artifact, NodeFacts, Platform, Route
from edeliver.core.ports import CommandResult, NodeClaim, NodeLockHolder

FaultKind = Literal["fail", "hang", "disconnect"]
STEPS = ("prepare", "install", "activate", "verify", "roll_back")
LINUX = Platform("linux", "x86_64", "glibc", "2.36")


@dataclass
class FakeHost:
    """A simulated node: its disk and its running VM."""

    platform: Platform = LINUX
    free_bytes: int = 10**10
    uploads: set[str] = field(default_factory=set)  # verified artifacts on disk
    releases: set[str] = field(default_factory=set)  # complete release dirs
    staging: set[str] = field(default_factory=set)  # half-unpacked dirs, never a release
    current: str | None = None
    running: str | None = None
    reachable: bool = True
    # What a task's command does here: given the script and its env, its result. Default: ok.
    commands: Callable[[str, Mapping[str, str]], CommandResult] = lambda _s, _e: CommandResult(
        0, ""
    )
    previous: str | None = None  # what a rollback of `current` returns to
    lock: NodeLockHolder | None = None  # the node's lock, held while a shell that took it is open
    generations: int = 0  # how many times the lock was taken before the current holder


@dataclass
class Faults:
    """Faults to inject, by (node, step). They hold until removed, as a bad release would."""

    by_step: dict[tuple[str, str], FaultKind] = field(default_factory=dict)

    def add(self, node: str, step: str, kind: FaultKind = "fail") -> None:
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; steps are {', '.join(STEPS)}")
        self.by_step[(node, step)] = kind

    def clear(self) -> None:
        self.by_step.clear()


class InMemoryNodeShells:
    """Opens InMemoryNodeShells on FakeHosts by node name."""

    def __init__(
        self,
        hosts: dict[str, FakeHost],
        faults: Faults | None = None,
        trace: list[tuple[str, ...]] | None = None,
        routes: Mapping[str, Route] | None = None,
    ) -> None:
        self.hosts, self.faults = hosts, faults or Faults()
        self.trace = trace if trace is not None else []
        self.opened: list[str] = []
        # The route each node's shell would decide now, as an upgrade-mode shell does.
        self.routes = dict(routes or {})
        self.shells: list[InMemoryNodeShell] = []
        self.expected: list[str] = []  # the versions rollouts told these shells they send

    def expect(self, artifact: Artifact) -> None:
        self.expected.append(artifact.version)

    async def open(self, node: NodeConfig) -> InMemoryNodeShell:
        host = self.hosts[node.name]
        if not host.reachable:
            raise NodeUnreachable(f"{node.name} ({node.address}): cannot connect: refused")
        self.opened.append(node.name)
        shell = InMemoryNodeShell(node.name, host, self.faults, self.trace)
        shell.would_route = self.routes.get(node.name)
        self.shells.append(shell)
        return shell

    def drop_connections(self) -> None:
        """What a killed deployer's connections do: drop, and the locks they held go free."""
        for shell in self.shells:
            shell.drop()


class InMemoryNodeShell:
    """The lifecycle steps on one FakeHost; each is idempotent like the real ones must be."""

    def __init__(
        self, name: str, host: FakeHost, faults: Faults, trace: list[tuple[str, ...]]
    ) -> None:
        self.name, self.host, self.faults, self.trace = name, host, faults, trace
        self.closed = False
        self.would_route: Route | None = None  # decided at prepare, unless one is taken
        self.route: Route | None = None
        self.holding = False

    async def hold(self, claim: NodeClaim) -> None:
        await asyncio.sleep(0)
        self._check_connected()
        held = self.host.lock
        if self.holding:
            return
        if held is not None:
            raise LockHeldError(f"{held.describe()}; nothing was changed on any node")
        generation = (held.generation if held else self.host.generations) + 1
        self.host.lock = NodeLockHolder(
            self.name, claim.deployment_id, claim.environment, claim.deployer,
            "2026-01-01T00:00:00Z", 0.0, generation,
        )  # fmt: skip
        self.holding = True

    async def lock_holder(self) -> NodeLockHolder | None:
        await asyncio.sleep(0)
        self._check_connected()
        return self.host.lock

    async def probe(self) -> NodeFacts:
        await asyncio.sleep(0)
        self._check_connected()
        h = self.host
        releases = tuple(sorted(h.releases))
        return NodeFacts(h.platform, h.free_bytes, h.running, h.current, releases, h.previous)

    def take_route(self, route: Route) -> None:
        self.trace.append(("take_route", self.name, route.why))
        self.route = route

    async def prepare(self, artifact: Artifact) -> Route | None:
        await self._step("prepare", artifact.version)
        self.host.uploads.add(artifact.version)
        self.route = self.route or self.would_route
        return self.route

    async def install(self, artifact: Artifact) -> None:
        await self._step("install", artifact.version, half_done=self._half_install)
        self._require(artifact.version in self.host.uploads, "nothing uploaded to unpack")
        self.host.staging.discard(artifact.version)
        self.host.releases.add(artifact.version)

    async def activate(self, artifact: Artifact) -> None:
        await self._step("activate", artifact.version, half_done=self._half_activate)
        self._require(artifact.version in self.host.releases, "no such release to switch to")
        if self.host.current != artifact.version:
            self.host.previous = self.host.current
        self.host.current = self.host.running = artifact.version

    async def verify(self, artifact: Artifact) -> None:
        await self._step("verify", artifact.version)
        self._require(self.host.running == artifact.version, f"{artifact.version} is not running")

    async def roll_back(self, artifact: Artifact, previous: str | None) -> None:
        await self._step("roll_back", artifact.version)
        if self.route is not None:
            self.trace.append(("rolled_back_by", self.name, self.route.why, previous or ""))
        h = self.host
        h.current = h.running = previous
        h.previous = None
        h.staging.discard(artifact.version)
        h.uploads.discard(artifact.version)
        if artifact.version != previous:
            h.releases.discard(artifact.version)

    async def run_command(self, script: str, env: Mapping[str, str]) -> CommandResult:
        self.trace.append(("command", self.name, script, env.get("STAGE", "")))
        await asyncio.sleep(0)
        self._check_connected()
        return self.host.commands(script, env)

    async def eval_elixir(
        self, artifact: Artifact, code: str, env: Mapping[str, str]
    ) -> CommandResult:
        self._require(artifact.version in self.host.releases, f"{artifact.version} not installed")
        return await self.run_command(f"eval {code}", env)

    async def close(self) -> None:
        self.drop()

    def drop(self) -> None:
        self.closed = True
        if self.holding:
            self.host.generations = self.host.lock.generation if self.host.lock else 0
            self.host.lock, self.holding = None, False

    async def _step(
        self, step: str, version: str, half_done: Callable[[str], None] | None = None
    ) -> None:
        """Record the call, yield to the loop like real I/O, then inject the scheduled fault."""
        self.trace.append(("step", self.name, step, version))
        await asyncio.sleep(0)
        self._check_connected()
        fault = self.faults.by_step.get((self.name, step))
        if fault == "hang":
            await asyncio.Event().wait()
        if fault == "disconnect":
            raise NodeUnreachable(f"{self.name}: connection lost during {step}")
        if fault == "fail":
            if half_done:
                half_done(version)
            raise NodeError(f"{self.name}: {step} of {version} failed (injected)")

    def _half_install(self, version: str) -> None:
        self.host.staging.add(version)

    def _half_activate(self, version: str) -> None:
        """A release that does not boot: switched to, but nothing runs."""
        if version in self.host.releases:
            self.host.current, self.host.running = version, None

    def _check_connected(self) -> None:
        if not self.host.reachable:
            raise NodeUnreachable(f"{self.name}: connection lost")

    def _require(self, condition: bool, problem: str) -> None:
        if not condition:
            raise NodeError(f"{self.name}: {problem}")


class InMemoryNodeControl:
    """Operates a FakeHost's release over an InMemoryNodeShell (its lock, its connection); a
    node named in `failing` does not come back from a start or restart (its VM left down)."""

    def __init__(self, shell: InMemoryNodeShell, failing: Container[str] = ()) -> None:
        self.name, self.shell, self.failing = shell.name, shell, failing

    async def hold(self, claim: NodeClaim) -> None:
        await self.shell.hold(claim)

    async def start_release(self) -> str:
        host = self._host("start")
        if host.running == host.current:
            return f"{host.current} was running"
        return self._boot(host, "started")

    async def stop_release(self) -> str:
        host = self._host("stop")
        stopped, host.running = host.running, None
        return f"{stopped} stopped" if stopped else "was not running"

    async def restart_release(self) -> str:
        host = self._host("restart")
        host.running = None
        return self._boot(host, "restarted")

    async def run_migration(self, function: str) -> str:
        self._host(f"migrate {function}")
        if self.name in self.failing:
            raise NodeError(f"{self.name}: {function}() failed (exit 1): no database")
        return f"{function}() done"

    async def close(self) -> None:
        await self.shell.close()

    def _host(self, step: str) -> FakeHost:
        self.shell.trace.append((step, self.name))
        self.shell._check_connected()
        return self.shell.host

    def _boot(self, host: FakeHost, done: str) -> str:
        if self.name in self.failing or host.current is None:
            raise NodeError(f"{self.name}: {host.current} did not come up")
        host.running = host.current
        return f"{host.current} {done}"
