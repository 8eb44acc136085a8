"""The NodeShell contract, run against the in-memory fake and against asyncssh on real sshd nodes.

`NodeShellContract` holds the tests; each backend subclasses it once and provides `world` (see
conftest.py). `RealOnlyContract` is the part of the contract the fake cannot honour (its
docstring says why); only real backends run it.
Below them, tests of what only the real adapter has: quoting, host keys, resumed uploads.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import subprocess
import tarfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from edeliver.adapters.node.archive_check import LISTING
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.node_scripts import STATUS_FILE_HEALTH, ReleaseCommands
from edeliver.adapters.node.ssh import AsyncsshNodeShells, pin_host_key
from edeliver.adapters.node.ssh_connect import fetch_host_key
from edeliver.adapters.node.ssh_output import SCRIPTS
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.core.domain.errors import (
    HostKeyChanged,
    HostKeyError,
    LockHeldError,
    NodeError,
    NodeUnreachable,
)
from edeliver.core.domain.model import Artifact
from edeliver.core.ports import NodeClaim, NodeShell
from tests.contract.conftest import (
    BROKEN,
    FakeWorld,
    FleetWorld,
    HelloReleases,
    World,
    WorldMaker,
    node_config,
)
from tests.contract.hot_world import (
    HOT_VARIANTS,
    HotWorld,
    open_hot_world,
    store_with_upgrade_package,
)
from tests.support.waiting import wait_for, wait_for_async

V1, V2 = "0.1.0", "0.2.0"
FIRST = NodeClaim("11111111-aaaa-4000-8000-000000000001", "blue", "alice@ci")
SECOND = NodeClaim("22222222-bbbb-4000-8000-000000000002", "green", "bob@laptop")


async def deploy(shell: NodeShell, artifact: Artifact) -> None:
    for step in (shell.prepare, shell.install, shell.activate, shell.verify):
        await step(artifact)


class NodeShellContract:
    """What every NodeShell does, whatever it talks to."""

    async def test_a_fresh_node_probes_empty(self, world: World) -> None:
        """A node never deployed to has no current, runs nothing, holds no releases."""
        facts = await world.shell.probe()
        assert (facts.current_version, facts.running_version, facts.releases) == (None, None, ())
        assert facts.platform.os == "linux" and facts.platform.arch and facts.platform.libc
        assert facts.free_bytes > 0

    async def test_a_full_deploy_leaves_v1_running(self, world: World) -> None:
        """prepare, install, activate, verify: v1 is current, on disk and running."""
        await deploy(world.shell, world.artifact(V1))
        facts = await world.shell.probe()
        assert (facts.current_version, facts.running_version, facts.releases) == (V1, V1, (V1,))
        assert await world.running_version() == V1

    async def test_every_step_run_twice_is_harmless(self, world: World) -> None:
        """Each step repeated after it completed leaves the node as one run did."""
        v1 = world.artifact(V1)
        for step in (world.shell.prepare, world.shell.install, world.shell.activate):
            await step(v1)
            await step(v1)
        await world.shell.verify(v1)
        await world.shell.verify(v1)
        facts = await world.shell.probe()
        assert (facts.current_version, facts.running_version, facts.releases) == (V1, V1, (V1,))
        assert await world.running_version() == V1

    async def test_rolling_back_v2_returns_to_v1(self, world: World) -> None:
        """After v2 is deployed, roll_back(previous=v1), twice, runs v1 and removes v2."""
        await deploy(world.shell, world.artifact(V1))
        v2 = world.artifact(V2)
        await deploy(world.shell, v2)
        assert await world.running_version() == V2
        await world.shell.roll_back(v2, V1)
        await world.shell.roll_back(v2, V1)
        facts = await world.shell.probe()
        assert (facts.current_version, facts.running_version, facts.releases) == (V1, V1, (V1,))
        assert await world.running_version() == V1

    async def test_rolling_back_a_node_that_never_activated_keeps_v1_running(
        self, world: World
    ) -> None:
        """v2 prepared and installed, then rolled back: v1 still runs, v2 is gone."""
        await deploy(world.shell, world.artifact(V1))
        v2 = world.artifact(V2)
        await world.shell.prepare(v2)
        await world.shell.install(v2)
        await world.shell.roll_back(v2, V1)
        facts = await world.shell.probe()
        assert (facts.current_version, facts.running_version, facts.releases) == (V1, V1, (V1,))

    async def test_rolling_back_without_previous_leaves_the_node_empty(self, world: World) -> None:
        """A first deploy rolled back (previous None), twice: no current, nothing runs or stays."""
        v1 = world.artifact(V1)
        await deploy(world.shell, v1)
        await world.shell.roll_back(v1, None)
        await world.shell.roll_back(v1, None)
        facts = await world.shell.probe()
        assert (facts.current_version, facts.running_version, facts.releases) == (None, None, ())
        assert await world.running_version() is None

    async def test_install_before_prepare_fails(self, world: World) -> None:
        """Nothing uploaded, nothing to unpack: install fails and the node stays empty."""
        with pytest.raises(NodeError):
            await world.shell.install(world.artifact(V1))
        assert (await world.shell.probe()).releases == ()

    async def test_activate_before_install_fails(self, world: World) -> None:
        """A release not on disk cannot be switched to; what runs keeps running."""
        await deploy(world.shell, world.artifact(V1))
        v2 = world.artifact(V2)
        await world.shell.prepare(v2)
        with pytest.raises(NodeError):
            await world.shell.activate(v2)
        facts = await world.shell.probe()
        assert (facts.current_version, facts.running_version) == (V1, V1)

    async def test_verify_of_a_release_that_was_not_activated_fails_at_once(
        self, world: World
    ) -> None:
        """verify(v2) while v1 is current fails promptly, not after the health timeout."""
        await deploy(world.shell, world.artifact(V1))
        v2 = world.artifact(V2)
        await world.shell.prepare(v2)
        await world.shell.install(v2)
        with pytest.raises(NodeError):
            await asyncio.wait_for(world.shell.verify(v2), 10)
        assert await world.running_version() == V1

    async def test_a_release_that_does_not_boot_fails_verify_and_rolls_back(
        self, world: World
    ) -> None:
        """The broken release activates but fails verify; roll_back restores v1 running."""
        await deploy(world.shell, world.artifact(V1))
        broken = world.artifact(BROKEN)
        await world.shell.prepare(broken)
        await world.shell.install(broken)
        await world.shell.activate(broken)
        with pytest.raises(NodeError):
            await world.shell.verify(broken)
        await world.shell.roll_back(broken, V1)
        facts = await world.shell.probe()
        assert (facts.current_version, facts.running_version, facts.releases) == (V1, V1, (V1,))
        assert await world.running_version() == V1


class RealOnlyContract:
    """Contract tests the fake cannot honour (yet), so only real backends run them:
    InMemoryNodeShell keeps no file contents, so it cannot tell a corrupted upload from a good
    one; and its roll_back switches to a `previous` that is not on disk instead of refusing."""

    async def test_a_corrupted_upload_is_refused_and_nothing_switches(
        self, world: FleetWorld
    ) -> None:
        """A tarball with one byte flipped fails prepare with both checksums; v1 still runs."""
        await deploy(world.shell, world.artifact(V1))
        good = world.artifact(V2)
        with pytest.raises(NodeError, match=f"checksum mismatch.*expected {good.sha256} got"):
            await world.shell.prepare(world.corrupted(good))
        with pytest.raises(NodeError):
            await world.shell.install(good)
        facts = await world.shell.probe()
        assert (facts.current_version, facts.running_version, facts.releases) == (V1, V1, (V1,))
        uploads = sorted(p.name for p in world.local(".edeliver/uploads").iterdir())
        assert uploads == [world.artifact(V1).name]

    async def test_rolling_back_to_a_release_not_on_disk_fails_and_changes_nothing(
        self, world: FleetWorld
    ) -> None:
        """roll_back to a previous release that was never installed: NodeError; v1 keeps running."""
        await deploy(world.shell, world.artifact(V1))
        v2 = world.artifact(V2)
        await world.shell.prepare(v2)
        with pytest.raises(NodeError, match=r"cannot roll back to 0\.0\.9"):
            await world.shell.roll_back(v2, "0.0.9")
        facts = await world.shell.probe()
        assert (facts.current_version, facts.running_version, facts.releases) == (V1, V1, (V1,))


class NodeLockContract:
    """The node lock: one deployment at a time, its holder named, a new generation per taker."""

    async def test_a_node_held_by_one_deployment_refuses_another_until_released(
        self, world: World
    ) -> None:
        """A second claim is refused naming the holder; once the holder closed, it is taken
        with the next generation."""
        other = await world.another_shell()
        try:
            await world.shell.hold(FIRST)
            await world.shell.hold(FIRST)  # the same claim again keeps the lock
            holder = await other.lock_holder()
            assert holder is not None
            assert (holder.deployment_id, holder.environment, holder.deployer) == (
                FIRST.deployment_id, "blue", "alice@ci",
            )  # fmt: skip
            named = (
                rf"{world.shell.name} is locked by deployment 11111111 \(blue, deployer alice@ci"
            )
            with pytest.raises(LockHeldError, match=named):
                await other.hold(SECOND)
            await world.shell.close()
            assert await other.lock_holder() is None
            await other.hold(SECOND)
            taken = await other.lock_holder()
            assert taken is not None and taken.generation == holder.generation + 1
        finally:
            await other.close()


class TestInMemoryNodeShell(NodeShellContract, NodeLockContract):
    @pytest.fixture
    def world(self, fake_world: FakeWorld) -> FakeWorld:
        return fake_world


@pytest.mark.slow
class TestAsyncsshNodeShell(NodeShellContract, RealOnlyContract, NodeLockContract):
    @pytest.fixture
    def world(self, fleet_world: FleetWorld) -> FleetWorld:
        return fleet_world


@pytest.fixture(scope="session")
def hot_store(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[HelloReleases, LocalDirectoryStore]:
    """hello v1, v2 (the variant the relup changes) and the upgrade package 0.1.0 -> 0.2.0."""
    root = tmp_path_factory.mktemp("hot-store")
    releases = HelloReleases(root, HOT_VARIANTS)
    return releases, store_with_upgrade_package(root, releases)


@pytest.mark.slow
class TestHotUpgradeNodeShell(NodeShellContract):
    """The whole contract but `RealOnlyContract`, whose tests do not apply to the hot route:
    its prepare uploads the store's upgrade package, never the release tarball the test
    corrupts, and its roll_back is a release_handler downgrade, refused (in other words) when
    release_handler does not know the version. v1 on a fresh node takes the full route, v2
    over it the hot route (`test_the_hot_route_is_taken_over_a_running_v1`)."""

    @pytest.fixture
    async def world(
        self,
        module_fleet: LocalFleet,
        hot_store: tuple[HelloReleases, LocalDirectoryStore],
        tmp_path: Path,
    ) -> AsyncIterator[HotWorld]:
        world = await open_hot_world(module_fleet, *hot_store, tmp_path)
        yield world
        await world.shell.close()

    async def test_the_hot_route_is_taken_over_a_running_v1(self, world: HotWorld) -> None:
        """v1 on a fresh node goes the full way; v2 over it hot, the same BEAM still running."""
        await deploy(world.shell, world.artifact(V1))
        pids = world.fleet_world.beam_pids()
        await deploy(world.shell, world.artifact(V2))
        routes = {v: (r.hot, r.package_from) for v, r in world.shell.routes.items()}
        assert routes == {V1: (False, None), V2: (True, V1)}
        assert world.fleet_world.beam_pids() == pids and len(pids) == 1
        assert await world.running_version() == V2

    @pytest.mark.parametrize("told", [False, True], ids=["not told", "told the release"])
    async def test_a_hot_route_after_its_probe_asks_the_vm_once_and_reads_the_package_once(
        self, world: HotWorld, caplog: pytest.LogCaptureFixture, told: bool
    ) -> None:
        """The probe's own script asks release_handler; the prepare decides the route from that
        answer (no script of its own for it) and streams the package, listed as it comes; the
        install unpacks it with no second listing. The same BEAM then runs v2. Told the
        release first (as a rollout does), the probe also found no package upload there, so
        the prepare is the stream alone."""
        await deploy(world.shell, world.artifact(V1))
        pids, v2 = world.fleet_world.beam_pids(), world.artifact(V2)
        hot = world.shell.of(v2)
        if told:
            world.shell.shells.expect(v2)
        caplog.set_level(logging.DEBUG, logger=SCRIPTS.name)
        assert (await hot.probe()).running_version == V1
        assert len(caplog.records) == 1
        caplog.clear()
        route = await hot.prepare(v2)
        assert (route.hot, route.package_from) == (True, V1)
        assert len(caplog.records) == (1 if told else 2)  # (the upload path's look,) the stream
        caplog.clear()
        await hot.install(v2)
        assert len(caplog.records) == 1  # the unpack only: the stream's listing was checked
        await hot.activate(v2)
        await hot.verify(v2)
        assert world.fleet_world.beam_pids() == pids
        assert await world.running_version() == V2

    async def test_a_rollouts_hold_runs_its_probe_so_the_probe_after_it_sends_no_script(
        self, world: HotWorld, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Told the release (a rollout), the lock's holder also runs the hot probe once it holds
        the node (release_handler's view too): the probe after the hold sends no script and says
        what a probe of its own says; the one after asks again. The hot steps after it reach
        the VM by the node name that held probe found, and the same BEAM runs v2."""
        await deploy(world.shell, world.artifact(V1))
        pids, v2 = world.fleet_world.beam_pids(), world.artifact(V2)
        hot = world.shell.of(v2)
        world.shell.shells.expect(v2)
        await hot.hold(FIRST)
        caplog.set_level(logging.DEBUG, logger=SCRIPTS.name)
        held = await hot.probe()
        assert caplog.records == []
        again = await hot.probe()
        assert len(caplog.records) == 1
        seen = [(f.running_version, f.current_version, f.releases) for f in (held, again)]
        assert seen == [(V1, V1, (V1,))] * 2
        await deploy(hot, v2)
        assert world.fleet_world.beam_pids() == pids
        assert await world.running_version() == V2


# -- the real adapter only ---------------------------------------------------------------------


async def ended_on_the_node(world: FleetWorld, pids: list[str]) -> None:
    """Wait until none of `pids` runs on the node (the node's init reaps them); fail naming
    those still running at the deadline."""
    probe = " ".join(f"kill -0 {pid} 2>/dev/null && echo {pid};" for pid in pids)

    async def none_alive() -> bool:
        return (await world.shell.run_command(probe, {})).output.strip() == ""

    await wait_for_async(none_alive, 15, f"{pids} to be killed on the node")


@pytest.mark.slow
class TestAsyncsshOnly:
    async def test_a_deploy_path_with_a_space_and_a_quote_works(
        self, module_fleet: LocalFleet, open_world: WorldMaker
    ) -> None:
        """Every remote argument is quoted: deploy, roll back and probe under "it's a dir"."""
        path = f'{module_fleet.deploy_path}/it\'s a "dir" $HOME'
        world = await open_world(path)
        try:
            await deploy(world.shell, world.artifact(V1))
            v2 = world.artifact(V2)
            await deploy(world.shell, v2)
            await world.shell.roll_back(v2, V1)
            facts = await world.shell.probe()
            assert (facts.current_version, facts.running_version) == (V1, V1)
            assert os.readlink(world.local("current")) == f"releases/{V1}"
            assert await world.running_version() == V1
        finally:
            await world.shell.close()

    async def test_a_release_listing_more_than_64_kib_installs_and_runs(
        self, open_world: WorldMaker, tmp_path: Path
    ) -> None:
        """A real app's release lists thousands of entries: the node's listing is read whole,
        not cut to the last 64 KiB other output keeps (a cut one was refused as unreadable)."""
        world = await open_world()
        big = padded_release(world.artifact(V1), tmp_path / "big", files=1500)
        listed = subprocess.run(
            [*LISTING.split()[1:], big.location], env={"LC_ALL": "C"}, capture_output=True,
            check=True,
        )  # fmt: skip
        assert len(listed.stdout) > 2 * 64 * 1024
        try:
            await deploy(world.shell, big)
            facts = await world.shell.probe()
            assert (facts.current_version, facts.running_version) == (V1, V1)
            assert await world.running_version() == V1
            assert os.path.isfile(world.local(f"releases/{V1}/lib/padding-1.0/priv/f1499"))
        finally:
            await world.shell.close()

    async def test_task_commands_run_from_the_deploy_path_with_their_env_quoted(
        self, module_fleet: LocalFleet, open_world: WorldMaker
    ) -> None:
        """A task's script: run from the deploy path, env values verbatim, its exit status and
        merged output returned, its `#!` interpreter used."""
        path = f'{module_fleet.deploy_path}/it\'s a "dir" $HOME'
        world = await open_world(path)
        tricky = 'it\'s "quoted" $HOME `id` \\ and\nnewlines'
        try:
            said = await world.shell.run_command(
                'pwd; printf "%s\\n" "$VALUE"; echo oops >&2; exit 3', {"VALUE": tricky}
            )
            assert said.status == 3
            lines = said.output.split("\n")
            assert lines[0] == path and "\n".join(lines[1:3]) == tricky
            assert "oops" in said.output
            bash = await world.shell.run_command("#!/bin/bash\necho ${BASH_VERSION:+bash}", {})
            assert (bash.status, bash.output.strip()) == (0, "bash")
        finally:
            await world.shell.close()

    async def test_a_command_cut_short_is_stopped_on_the_node_with_what_it_started(
        self, fleet_world: FleetWorld
    ) -> None:
        """A step's timeout cancels a running command: the node kills the script and its
        children, so nothing it would have done later happens after the rollback."""
        script = "echo $$ > script.pid; sleep 60 & echo $! > child.pid; wait; touch late-mark"
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(3):
                await fleet_world.shell.run_command(script, {})
        pids = [fleet_world.local(name).read_text().strip() for name in ("script.pid", "child.pid")]
        await ended_on_the_node(fleet_world, pids)
        assert not fleet_world.local("late-mark").exists()

    async def test_a_command_ending_in_exec_is_stopped_too(self, fleet_world: FleetWorld) -> None:
        """A script that replaces its shell (task scripts end in `exec`) is still found."""
        script = "exec sh -c 'echo $$ > exec.pid; sleep 60; touch late-mark'"
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(3):
                await fleet_world.shell.run_command(script, {})
        await ended_on_the_node(fleet_world, [fleet_world.local("exec.pid").read_text().strip()])
        assert not fleet_world.local("late-mark").exists()

    async def test_elixir_is_evaluated_by_the_installed_release(
        self, fleet_world: FleetWorld
    ) -> None:
        """`.exs` tasks: `bin/<app> eval` of the given version, its modules loaded, env given."""
        v1 = fleet_world.artifact(V1)
        missing = await fleet_world.shell.eval_elixir(v1, "IO.puts(1)", {})
        assert missing.status != 0 and f"release {V1} is not installed" in missing.output
        await fleet_world.shell.prepare(v1)
        await fleet_world.shell.install(v1)
        code = 'IO.puts(Hello.version() <> " " <> System.fetch_env!("WHO"))'
        said = await fleet_world.shell.eval_elixir(v1, code, {"WHO": "task's env"})
        assert (said.status, said.output.strip()) == (0, f"{V1} task's env")

    async def test_activate_again_does_not_restart_the_running_vm(
        self, fleet_world: FleetWorld
    ) -> None:
        """The second activate of what already runs from current leaves the same BEAM."""
        v1 = fleet_world.artifact(V1)
        await deploy(fleet_world.shell, v1)
        pids = fleet_world.beam_pids()
        await fleet_world.shell.activate(v1)
        await fleet_world.shell.verify(v1)
        assert fleet_world.beam_pids() == pids and len(pids) == 1

    async def test_a_streamed_install_and_its_activation_take_one_script_each(
        self, fleet_world: FleetWorld, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The install places the streamed release (its listing checked), writes the settings
        and reads the node's state in one script; the activation switches from that state."""
        v1 = fleet_world.artifact(V1)
        await fleet_world.shell.prepare(v1)
        caplog.set_level(logging.DEBUG, logger=SCRIPTS.name)
        await fleet_world.shell.install(v1)
        installing = len(caplog.records)
        await fleet_world.shell.activate(v1)
        assert (installing, len(caplog.records) - installing) == (1, 1)
        await fleet_world.shell.verify(v1)
        assert await fleet_world.running_version() == V1

    async def test_a_release_the_probe_found_complete_is_not_uploaded_again(
        self, fleet_world: FleetWorld, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Back to a version the node keeps complete: after the probe, prepare sends nothing
        (no upload, no check of one), and the install finds the release in place."""
        v1, v2 = fleet_world.artifact(V1), fleet_world.artifact(V2)
        await deploy(fleet_world.shell, v1)
        await deploy(fleet_world.shell, v2)
        assert V1 in (await fleet_world.shell.probe()).releases
        caplog.set_level(logging.DEBUG, logger=SCRIPTS.name)
        await fleet_world.shell.prepare(v1)
        assert caplog.records == []
        await fleet_world.shell.prepare(v1)  # the probe's word is used once: now it checks
        assert len(caplog.records) == 1
        for step in (fleet_world.shell.install, fleet_world.shell.activate):
            await step(v1)
        await fleet_world.shell.verify(v1)
        assert await fleet_world.running_version() == V1

    async def test_a_new_version_after_a_probe_that_found_no_upload_is_one_script(
        self, open_world: WorldMaker, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The shells told the release first: the probe reads its upload path too, and a
        prepare after it sends only the stream (no look at the upload path of its own)."""
        shells = AsyncsshNodeShells(known_hosts=str(open_world.fleet.known_hosts))
        world = await open_world(shells=shells)
        v1, v2 = world.artifact(V1), world.artifact(V2)
        try:
            await deploy(world.shell, v1)
            shells.expect(v2)
            assert V2 not in (await world.shell.probe()).releases
            caplog.set_level(logging.DEBUG, logger=SCRIPTS.name)
            await world.shell.prepare(v2)
            assert len(caplog.records) == 1
            for step in (world.shell.install, world.shell.activate):
                await step(v2)
            await world.shell.verify(v2)
            assert await world.running_version() == V2
        finally:
            await world.shell.close()

    @pytest.mark.parametrize("told", [True, False], ids=["a rollout", "not a rollout"])
    async def test_the_probe_after_a_rollouts_hold_is_the_holders(
        self, open_world: WorldMaker, caplog: pytest.LogCaptureFixture, told: bool
    ) -> None:
        """A rollout's hold (the release told) has the lock's holder run the probe: the probe
        right after sends no script of its own and finds the node as it is, its upload path
        looked at too (the prepare then only streams); without a release told (a day-2
        command's hold) the holder runs none."""
        shells = AsyncsshNodeShells(known_hosts=str(open_world.fleet.known_hosts))
        world = await open_world(shells=shells)
        v1, v2 = world.artifact(V1), world.artifact(V2)
        try:
            await deploy(world.shell, v1)
            if told:
                shells.expect(v2)
            await world.shell.hold(FIRST)
            caplog.set_level(logging.DEBUG, logger=SCRIPTS.name)
            facts = await world.shell.probe()
            assert len(caplog.records) == (0 if told else 1)
            assert (facts.current_version, facts.running_version) == (V1, V1)
            caplog.clear()
            await world.shell.prepare(v2)
            assert len(caplog.records) == (1 if told else 2)  # (the upload path's look,) the stream
            for step in (world.shell.install, world.shell.activate, world.shell.verify):
                await step(v2)
            assert await world.running_version() == V2
        finally:
            await world.shell.close()

    async def test_an_activation_planned_from_a_state_the_node_left_plans_again(
        self, fleet_world: FleetWorld, caplog: pytest.LogCaptureFixture
    ) -> None:
        """v1's VM killed between the install of v2 and its activation: the switch planned
        from the install's state changes nothing; the state is read again, and v2 comes up."""
        v1, v2 = fleet_world.artifact(V1), fleet_world.artifact(V2)
        await deploy(fleet_world.shell, v1)
        await fleet_world.shell.prepare(v2)
        await fleet_world.shell.install(v2)
        for pid in fleet_world.beam_pids():
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not fleet_world.beam_pids(), 10, "v1's VM to be gone")
        caplog.set_level(logging.DEBUG, logger=SCRIPTS.name)
        await fleet_world.shell.activate(v2)
        assert len(caplog.records) == 3  # the switch refused, the probe, the switch
        await fleet_world.shell.verify(v2)
        assert await fleet_world.running_version() == V2

    @pytest.mark.parametrize("probed", [False, True], ids=["unprobed", "probed first"])
    async def test_a_half_upload_is_resumed_and_verified(
        self, fleet_world: FleetWorld, probed: bool
    ) -> None:
        """With half the tarball already on the node, prepare sends only the rest; also after
        a probe told the release (it saw the partial: the prepare still asks how far it got)."""
        sent: list[int] = []
        shells = AsyncsshNodeShells(
            known_hosts=str(fleet_world.fleet.known_hosts),
            progress=lambda _node, done, _total: sent.append(done),
        )
        shell = await shells.open(fleet_world.config)
        v1 = fleet_world.artifact(V1)
        data = Path(v1.location).read_bytes()
        fleet_world.write_partial_upload(v1, data[: len(data) // 2])
        try:
            if probed:
                shells.expect(v1)
                await shell.probe()
            await shell.prepare(v1)
            await shell.install(v1)
        finally:
            await shell.close()
        assert sent[0] > len(data) // 2 and sent[-1] == len(data)
        assert fleet_world.local(f".edeliver/uploads/{v1.name}").read_bytes() == data

    async def test_a_corrupted_partial_upload_is_deleted_and_the_next_prepare_succeeds(
        self, fleet_world: FleetWorld
    ) -> None:
        """A flipped byte in the node's partial fails the checksum; a re-run uploads afresh."""
        v1 = fleet_world.artifact(V1)
        half = bytearray(Path(v1.location).read_bytes()[: v1.size // 2])
        half[10] ^= 0xFF
        partial = fleet_world.write_partial_upload(v1, bytes(half))
        with pytest.raises(NodeError, match="checksum mismatch"):
            await fleet_world.shell.prepare(v1)
        assert not partial.exists()
        await fleet_world.shell.prepare(v1)
        await fleet_world.shell.install(v1)
        assert (await fleet_world.shell.probe()).releases == (V1,)

    async def test_housekeeping_keeps_the_newest_but_never_current_or_previous(
        self, module_fleet: LocalFleet, open_world: WorldMaker
    ) -> None:
        """keep_releases=1: after v1, v2, broken, v1 is pruned; v2 (previous) and current stay."""
        shells = AsyncsshNodeShells(known_hosts=str(module_fleet.known_hosts), keep_releases=1)
        world = await open_world(shells=shells)
        try:
            await deploy(world.shell, world.artifact(V1))
            await deploy(world.shell, world.artifact(V2))
            assert (await world.shell.probe()).releases == (V1, V2)
            broken = world.artifact(BROKEN)
            for step in (world.shell.prepare, world.shell.install, world.shell.activate):
                await step(broken)
            assert (await world.shell.probe()).releases == (V2, BROKEN)
            uploads = sorted(p.name for p in world.local(".edeliver/uploads").iterdir())
            assert uploads == [f"hello-{V2}.tar.gz", f"hello-{BROKEN}.tar.gz"]
            await world.shell.roll_back(broken, V2)
            facts = await world.shell.probe()
            assert (facts.current_version, facts.running_version, facts.releases) == (V2, V2, (V2,))
        finally:
            await world.shell.close()

    async def test_the_status_file_health_check_of_hello_works(
        self, module_fleet: LocalFleet, open_world: WorldMaker
    ) -> None:
        """ReleaseCommands(health=STATUS_FILE_HEALTH) verifies v1 and refuses the broken one."""
        commands = ReleaseCommands(health=STATUS_FILE_HEALTH)
        shells = AsyncsshNodeShells(known_hosts=str(module_fleet.known_hosts), commands=commands)
        world = await open_world(shells=shells)
        try:
            await deploy(world.shell, world.artifact(V1))
            broken = world.artifact(BROKEN)
            for step in (world.shell.prepare, world.shell.install, world.shell.activate):
                await step(broken)
            with pytest.raises(NodeError, match="broken_on_purpose"):
                await world.shell.verify(broken)
        finally:
            await world.shell.close()

    async def test_many_parallel_commands_share_one_connection_within_max_sessions(
        self, fleet_world: FleetWorld
    ) -> None:
        """30 concurrent probes on one connection all succeed (sshd allows 10 sessions)."""
        results = await asyncio.gather(*(fleet_world.shell.probe() for _ in range(30)))
        assert {facts.current_version for facts in results} == {None}


@pytest.mark.slow
class TestAsyncsshConnecting:
    async def test_an_unknown_host_is_refused(
        self, module_fleet: LocalFleet, tmp_path: Path
    ) -> None:
        """A node missing from known_hosts: HostKeyError naming it, its address and fingerprint."""
        node = module_fleet.nodes[0]
        empty = tmp_path / "known_hosts"
        empty.write_text("")
        shells = AsyncsshNodeShells(known_hosts=str(empty))
        with pytest.raises(HostKeyError) as refused:
            await shells.open(node_config(module_fleet, node))
        assert not isinstance(refused.value, HostKeyChanged)
        message = str(refused.value)
        assert node.name in message and f"{node.host}:{node.port}" in message
        assert "unknown" in message and node.host_key_fingerprint in message

    async def test_a_changed_host_key_is_refused(self, tmp_path: Path) -> None:
        """After the node's host key rotated: HostKeyError saying CHANGED, with the new key."""
        with LocalFleet(tmp_path / "fleet", 1) as fleet:
            node = fleet.nodes[0]
            shells = AsyncsshNodeShells(known_hosts=str(fleet.known_hosts))
            await (await shells.open(node_config(fleet, node))).close()
            rotated = fleet.rotate_host_key(node.name)
            with pytest.raises(HostKeyChanged) as refused:
                await shells.open(node_config(fleet, node))
        message = str(refused.value)
        assert node.name in message and f"{node.host}:{node.port}" in message
        assert "CHANGED" in message and rotated.host_key_fingerprint in message

    async def test_many_connects_at_once_stay_within_max_startups(
        self, module_fleet: LocalFleet
    ) -> None:
        """60 connects at once to one sshd (MaxStartups 10:30:100 drops a third) all get through."""
        shells = AsyncsshNodeShells(known_hosts=str(module_fleet.known_hosts))
        config = node_config(module_fleet, module_fleet.nodes[0])
        opened = await asyncio.gather(*(shells.open(config) for _ in range(60)))
        await asyncio.gather(*(shell.close() for shell in opened))

    async def test_a_fetched_and_pinned_host_key_is_trusted(
        self, module_fleet: LocalFleet, tmp_path: Path
    ) -> None:
        """fetch_host_key gives the node's key and fingerprint; pinned, the node connects."""
        node = module_fleet.nodes[0]
        config = node_config(module_fleet, node)
        whose, line, fingerprint = await fetch_host_key(config)
        assert (whose, line, fingerprint) == (
            config.name,
            node.known_hosts_line,
            node.host_key_fingerprint,
        )
        pinned = tmp_path / "ssh" / "known_hosts"
        pin_host_key(pinned, f"{line.split()[0]} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOld")
        pin_host_key(pinned, line)
        assert pinned.read_text() == line + "\n"
        await (await AsyncsshNodeShells(known_hosts=str(pinned)).open(config)).close()

    async def test_the_users_openssh_known_hosts_decide_and_are_never_switched_off(
        self, module_fleet: LocalFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without a known_hosts path: ~/.ssh/config's file, else ~/.ssh/known_hosts; never none."""
        monkeypatch.setenv("HOME", str(tmp_path))
        ssh = tmp_path / ".ssh"
        ssh.mkdir()
        config = node_config(module_fleet, module_fleet.nodes[0])
        line = module_fleet.nodes[0].known_hosts_line + "\n"
        (ssh / "config").write_text(
            "Host *\n  UserKnownHostsFile none\n  StrictHostKeyChecking no\n"
        )
        with pytest.raises(HostKeyError, match="unknown host key"):
            await AsyncsshNodeShells().open(config)
        (ssh / "known_hosts").write_text(line)
        await (await AsyncsshNodeShells().open(config)).close()
        (ssh / "config").write_text(f"Host *\n  UserKnownHostsFile {tmp_path / 'pinned'}\n")
        with pytest.raises(HostKeyError, match="unknown host key"):
            await AsyncsshNodeShells().open(config)
        (tmp_path / "pinned").write_text(line)
        await (await AsyncsshNodeShells().open(config)).close()

    @pytest.mark.parametrize(
        "change",
        [{"identity_file": "wrong key"}, {"port": 1}],
        ids=["wrong credentials", "nothing listening"],
    )
    async def test_an_unreachable_node_raises_node_unreachable(
        self, module_fleet: LocalFleet, tmp_path: Path, change: dict[str, Any]
    ) -> None:
        """A refused key or a closed port: NodeUnreachable naming the node."""
        node = module_fleet.nodes[0]
        if "identity_file" in change:
            change = {"identity_file": str(tmp_path / "other_key")}
            asyncssh.generate_private_key("ssh-ed25519").write_private_key(change["identity_file"])
        config = replace(node_config(module_fleet, node), **change)
        with pytest.raises(NodeUnreachable, match=node.name):
            await AsyncsshNodeShells(known_hosts=str(module_fleet.known_hosts)).open(config)


def padded_release(release: Artifact, directory: Path, files: int) -> Artifact:
    """`release` repacked with `files` more small files under lib/, as a bigger app has."""
    directory.mkdir(parents=True)
    tree = directory / "tree"
    with tarfile.open(release.location) as archive:
        archive.extractall(tree, filter="tar")
    padding = tree / "lib" / "padding-1.0" / "priv"
    padding.mkdir(parents=True)
    for i in range(files):
        (padding / f"f{i}").write_text(f"{i}\n" + "x" * 40)
    path = directory / release.location.rpartition("/")[2]
    with tarfile.open(path, "w:gz") as archive:
        for entry in sorted(tree.iterdir()):
            archive.add(entry, arcname=entry.name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return replace(release, sha256=digest, size=path.stat().st_size, location=str(path))
