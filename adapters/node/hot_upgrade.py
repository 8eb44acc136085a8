"""The NodeShell of environments with `mode = "upgrade"`: hot code upgrades with release_handler.

It composes the full-release `AsyncsshNodeShell` of the same node (its connection, upload with
resume and sha256 check, scripts) and maps the lifecycle steps (DESIGN §3) onto release_handler:

| step     | hot route                                                        |
| -------- | ---------------------------------------------------------------- |
| prepare  | upload the upgrade package, verify its sha256                    |
| install  | unpack_release, render runtime.exs into sys.config, check_install |
| activate | install_release (runs the relup; the VM keeps its OS pid)        |
| verify   | the app runs the new vsn, then make_permanent                    |
| roll_back| install_release of the previous version (the relup's down part) + make_permanent |

Each node takes its route at its first step: hot when release_handler already knows the target
version (a downgrade, or a resumed upgrade) or the store has a package from the version it runs;
the full-release route otherwise (no VM answers, or no package covers its version). `prepare`
returns the `Route`, with the release the node would roll back to; the deployment records it,
and the shell of a resumed run is given it back (`take_route`) instead of deciding again: a node
rolls back the way it went forward, whatever it answers by then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace

from edeliver.adapters.node import hot_scripts as hs
from edeliver.adapters.node.node_lock import REFUSED_BY_LOCK
from edeliver.adapters.node.node_scripts import Layout
from edeliver.adapters.node.ssh import HELD_PROBE_FRESH, AsyncsshNodeShell, AsyncsshNodeShells
from edeliver.adapters.node.ssh_health import poll_pauses
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import NodeError
from edeliver.core.domain.model import Artifact, NodeFacts, Route
from edeliver.core.ports import CommandResult, NodeClaim, NodeLockHolder, UpgradeStore


@dataclass(frozen=True)
class Probed:
    """What a node's probe found: release_handler's view (None: no VM answered), the version
    `current` points to, and when (the event loop's clock)."""

    releases: hs.Releases | None
    current: str | None
    at: float


class HotUpgradeNodeShells:
    """Opens a HotUpgradeNodeShell per node over the full-release shells' connections."""

    def __init__(self, shells: AsyncsshNodeShells, store: UpgradeStore, app: str) -> None:
        self.full, self.store, self.app = shells, store, app

    async def open(self, node: NodeConfig) -> HotUpgradeNodeShell:
        return HotUpgradeNodeShell(await self.full.open(node), self)

    def expect(self, artifact: Artifact) -> None:
        self.full.expect(artifact)  # a node whose VM cannot take it hot gets the full release


class HotUpgradeNodeShell:
    """The lifecycle steps on one node, hot where release_handler can, else a full release."""

    def __init__(self, full: AsyncsshNodeShell, shells: HotUpgradeNodeShells) -> None:
        self.name, self.full, self._shells = full.name, full, shells
        self._route: Route | None = None
        self._package: Artifact | None = None  # the hot route's package, once fetched
        self._probed: Probed | None = None  # the last probe's answer, for the route
        # The VM's distribution flag the last probe found (`-sname NAME`): the scripts that
        # ask the VM then need not look for it in /proc; None: they look.
        self._vm: str | None = None

    async def probe(self) -> NodeFacts:
        """The full probe, with release_handler's view when a VM runs (see `hot_facts`)."""
        facts, releases, self._vm = await hot_facts(self.full, self._layout(), self._expected())
        now = asyncio.get_running_loop().time()
        self._probed = Probed(releases, facts.current_version, now)
        return facts

    def take_route(self, route: Route) -> None:
        self._route = route

    async def prepare(self, artifact: Artifact) -> Route:
        """The route this node takes, decided here, is recorded by the deployment."""
        route = await self._route_for(artifact)
        if not route.hot:
            await self.full.prepare(artifact)
        elif route.package_from is not None:
            package = _upload_of(await self._package_of(artifact, route))
            await self.full.prepare(package, unpack=False)  # release_handler unpacks it
        return route

    async def install(self, artifact: Artifact) -> None:
        route = await self._route_for(artifact)
        if not route.hot:
            await self.full.install(artifact)
            return
        layout = self._layout()
        upload = ""
        if route.package_from is not None:
            upload = layout.upload(_upload_name(artifact.version, route.package_from))
            await self.full.check_upload(upload, await self._package_of(artifact, route))
        script = hs.unpack_script(layout, artifact.version, upload, self._vm)
        doing = f"unpacking the upgrade to {artifact.version}"
        await self.full.run_then_write_runtime_env(script, doing)

    async def activate(self, artifact: Artifact) -> None:
        if not (await self._route_for(artifact)).hot:
            await self.full.activate(artifact)
            return
        await self._install_release(self._layout(), artifact.version)

    async def verify(self, artifact: Artifact) -> None:
        if not (await self._route_for(artifact)).hot:
            await self.full.verify(artifact)
            return
        await self._make_permanent(self._layout(), artifact.version, activated=True)

    async def roll_back(self, artifact: Artifact, previous: str | None) -> None:
        route = await self._route_for(artifact)
        if not route.hot or previous is None:
            await self.full.roll_back(artifact, previous)
            return
        layout = self._layout()
        releases = await self._wait_for_vm(layout)
        if previous not in releases.status:
            raise NodeError(f"{self.name}: cannot downgrade to {previous}: release_handler "
                            f"does not know it ({_listed(releases)})")  # fmt: skip
        await self._install_release(layout, previous)
        await self._make_permanent(layout, previous)

    async def run_command(self, script: str, env: Mapping[str, str]) -> CommandResult:
        self._probed = self._vm = None  # a task may change what runs: the route asks again
        return await self.full.run_command(script, env)

    async def eval_elixir(
        self, artifact: Artifact, code: str, env: Mapping[str, str]
    ) -> CommandResult:
        self._probed = self._vm = None
        # With the full-release dir of the version; a node upgraded hot has none of its own.
        return await self.full.eval_elixir(artifact, code, env)

    async def hold(self, claim: NodeClaim) -> None:
        """The full shell's hold, whose holder also runs this shell's probe (`hot_facts`)."""
        await self.full.hold(claim, hot_probe_then(self._layout(), self._expected()))

    def _expected(self) -> Artifact | None:
        return self._shells.full.expected

    async def lock_holder(self) -> NodeLockHolder | None:
        return await self.full.lock_holder()

    async def close(self) -> None:
        await self.full.close()

    # -- the route ---------------------------------------------------------------------------

    async def _route_for(self, artifact: Artifact) -> Route:
        if self._route is None:
            self._route = await self._choose(artifact)
        return self._route

    async def _choose(self, artifact: Artifact) -> Route:
        """Hot when release_handler can take the node to the target, else the full release;
        with what the node says it would roll back to by that route."""
        target = artifact.version
        probed, self._probed = self._probed, None
        # The node is held from before its probe: only its VM (a crash) can change the answer;
        # a prepare later than this (a later batch) asks again.
        if probed is None or asyncio.get_running_loop().time() - probed.at > HELD_PROBE_FRESH:
            probed = None
        releases = probed.releases if probed else await self._releases(self._layout())
        if releases is None:
            current = await self._current(probed)
            return Route(False, "full release: no VM answers on the node", current)
        running, permanent = releases.running, releases.permanent
        if target in releases.status:
            why = f"hot: {target} is {releases.status[target]} on the node"
            return Route(True, why, permanent, running)
        package = await self._shells.store.upgrade(artifact.app, running or "nothing", target)
        if package is None:
            current = await self._current(probed)
            why = f"full release: no upgrade package from {running} to {target}"
            return Route(False, why, current, running)
        self._package = package
        return Route(True, f"hot upgrade from {running}", permanent, running, running)

    async def _current(self, probed: Probed | None) -> str | None:
        """The version `current` points to: the fresh probe's, else read now."""
        return probed.current if probed else (await self.full.probe()).current_version

    async def _package_of(self, artifact: Artifact, route: Route) -> Artifact:
        """The package of a hot route, from the store when the route was recorded earlier."""
        assert route.package_from is not None
        if self._package is None:
            found = await self._shells.store.upgrade(
                artifact.app, route.package_from, artifact.version
            )
            if found is None:
                raise NodeError(
                    f"{self.name}: the upgrade package from {route.package_from} to "
                    f"{artifact.version} is no longer in the store"
                )
            self._package = found
        return self._package

    # -- steps' parts ------------------------------------------------------------------------

    def _layout(self) -> Layout:
        try:
            return Layout(self.full.node.path, self._shells.app)
        except ValueError as error:
            raise NodeError(f"{self.name}: {error}") from None

    async def _releases(self, layout: Layout) -> hs.Releases | None:
        return await releases_on(self.full, layout)

    async def _wait_for_vm(self, layout: Layout) -> hs.Releases:
        """release_handler's view once the VM answers (a failed code_change restarts it)."""
        loop, shells = asyncio.get_running_loop(), self._shells.full
        deadline = loop.time() + self.full.timeouts.verify
        pauses = poll_pauses(shells.poll_interval)
        while (releases := await self._releases(layout)) is None:
            if loop.time() > deadline:
                raise NodeError(f"{self.name}: no VM answers after {self.full.timeouts.verify:g}s")
            await asyncio.sleep(next(pauses))
        return releases

    async def _install_release(self, layout: Layout, version: str) -> None:
        generation = await self.full.lock_generation()
        said = await self.full.script_output(
            hs.install_script(layout, version, generation, self._vm), f"install_release {version}"
        )
        ok, detail = hs.installed_from(said)
        if ok:
            return
        now = await self._wait_for_vm(layout)
        raise NodeError(
            f"{self.name}: install_release {version} failed: {detail}; the node now runs "
            f"{now.running} (a code_change failing after the point of no return restarts the "
            "node in place into its permanent release: its in-memory state is lost)"
        )

    async def _make_permanent(
        self, layout: Layout, version: str, *, activated: bool = False
    ) -> None:
        """Poll until the app runs `version`, then make it permanent; else fail with why. With
        `activated`, the first poll fails at once, not after the verify timeout, when the VM
        answers that `version` was never installed (only unpacked): waiting cannot make it run."""
        loop, shells = asyncio.get_running_loop(), self._shells.full
        deadline = loop.time() + self.full.timeouts.verify
        generation = await self.full.lock_generation()
        pauses = poll_pauses(shells.poll_interval)
        while True:
            script = hs.permanent_script(
                layout, version, generation, activated=activated, vm=self._vm
            )
            result = await self.full.run_script(script)
            if result.exit_status == 0:
                return
            if result.exit_status == REFUSED_BY_LOCK:  # waiting cannot give the lock back
                said = str(result.stderr).strip()[-500:]
                raise NodeError(f"{self.name}: making {version} permanent was refused: {said}")
            if activated and (releases := hs.unactivated(str(result.stdout) + str(result.stderr))):
                status = releases.status.get(version)
                raise NodeError(f"{self.name}: {version} was not activated: release_handler has "
                                f"it {status or 'not at all'} ({_listed(releases)})")  # fmt: skip
            activated = False  # checked by the first poll; the next ones only wait for the app
            if loop.time() > deadline:
                said = (str(result.stderr) + str(result.stdout)).strip()[-1500:]
                raise NodeError(f"{self.name}: {version} is not running healthy: {said}")
            await asyncio.sleep(next(pauses))


async def releases_on(full: AsyncsshNodeShell, layout: Layout) -> hs.Releases | None:
    """release_handler's view, or None when no VM answers."""
    said = await full.run_script(hs.releases_script(layout))
    releases = hs.parse_releases(str(said.stdout))
    return releases if said.exit_status == 0 and releases.booted else None


async def hot_facts(
    full: AsyncsshNodeShell, layout: Layout, expected: Artifact | None = None
) -> tuple[NodeFacts, hs.Releases | None, str | None]:
    """The full probe, but when a VM runs, release_handler's view: the version whose code runs,
    the permanent one (what a restart boots) and the newest old one (what a hot rollback
    returns to); one script. The VM's command line still names the version it booted before
    any hot upgrade, so it is not asked what runs. With the view, None when no VM answered.
    Told the release it will be `expected` to take, it also reads what is at the upload path
    of any package to it, so that the prepare's upload needs no look of its own. Last, the
    VM's distribution flag, for the scripts that ask it next (`hot_scripts.reported_vm_dist`)."""
    facts, said = await full.probe_then(hot_probe_then(layout, expected))
    releases = hs.reported_releases(said)
    if facts.running_version is None or releases is None:
        return facts, None, None  # no VM: nothing asked (an `rpc` would only start a client VM)
    return (
        replace(
            facts,
            running_version=releases.running,
            current_version=releases.permanent,
            previous_version=releases.newest_old or facts.previous_version,
        ),
        releases,
        hs.reported_vm_dist(said),
    )


def hot_probe_then(layout: Layout, expected: Artifact | None) -> str:
    """What follows the full probe's report on this route (release_handler's view, the
    package uploads to the release `expected`), the same text for the holder and the probe."""
    return hs.releases_report(layout, expected.version if expected else None)


def _upload_of(package: Artifact) -> Artifact:
    """The package as the full shell uploads it: keyed `<to>-from-<from>`, so it never takes the
    place of the full release of the same version in `.edeliver/uploads/`."""
    return replace(package, version=_upload_name(package.version, package.from_versions[0]))


def _upload_name(version: str, from_version: str | None) -> str:
    return f"{version}-from-{from_version}"


def _listed(releases: hs.Releases) -> str:
    return ", ".join(f"{v} {s}" for v, s in releases.status.items()) or "no releases"
