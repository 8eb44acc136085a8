"""Hot upgrades without nodes: what release_handler's answers mean, the store's upgrade
packages, the upgrade mode's shells, and `build upgrade`'s refusals (exit codes, one line)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edeliver.adapters.events.event_store import open_deployments
from edeliver.adapters.local.clock import FakeClock
from edeliver.adapters.node import hot_scripts as hs
from edeliver.adapters.node.fakes import FakeHost, InMemoryNodeShells
from edeliver.adapters.node.node_scripts import Layout
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.adapters.store.memory_store import InMemoryReleaseStore
from edeliver.cli.composition import Adapters
from edeliver.cli.main import Runtime, app
from edeliver.core.domain.config import Config
from edeliver.core.domain.model import Artifact
from edeliver.core.usecases.services import Services
from tests.support.simulation import artifact, config_text

runner = CliRunner()


@pytest.mark.parametrize(
    ("said", "running", "permanent"),
    [
        # A node without RELEASES: release_handler's stub names only the booted release.
        ("edeliver=booted 0.1.0\nedeliver=release 0.1.0 permanent\n", "0.1.0", "0.1.0"),
        # Installed, not yet permanent: the new code runs, a restart would boot the old.
        (
            "edeliver=booted 0.1.0\nedeliver=release 0.2.0 current\n"
            "edeliver=release 0.1.0 permanent\n",
            "0.2.0",
            "0.1.0",
        ),
        # Made permanent; the VM still booted 0.1.0 (bin/hello version would say 0.2.0).
        (
            "noise\nedeliver=booted 0.1.0\nedeliver=release 0.2.0 permanent\n"
            "edeliver=release 0.1.0 old\n",
            "0.2.0",
            "0.2.0",
        ),
    ],
)
def test_the_running_version_is_what_release_handler_says_not_the_boot_script(
    said: str, running: str, permanent: str
) -> None:
    """`current` wins over `permanent`, which wins over the version the VM booted."""
    releases = hs.parse_releases(said)
    assert (releases.running, releases.permanent) == (running, permanent)


def test_what_a_hot_rollback_returns_to_is_the_newest_old_release() -> None:
    """which_releases lists the newest first; with no `old` release there is none."""
    said = (
        "edeliver=booted 0.1.0\nedeliver=release 0.3.0 permanent\n"
        "edeliver=release 0.2.0 old\nedeliver=release 0.1.0 old\n"
    )
    assert hs.parse_releases(said).newest_old == "0.2.0"
    assert hs.parse_releases("edeliver=release 0.1.0 permanent\n").newest_old is None


def test_an_install_that_fails_says_why_and_one_that_ran_says_from_what() -> None:
    """`rpc` exits 0 on `{:error, …}`: the printed line decides."""
    assert hs.installed_from("edeliver=installed from 0.1.0\n") == (True, "0.1.0")
    assert hs.installed_from("") == (True, "")  # already current: nothing to do
    failed = "edeliver=failed {:code_change_failed, #PID<0.1.0>, Hello.Counter}\n"
    assert hs.installed_from(failed) == (False, "{:code_change_failed, #PID<0.1.0>, Hello.Counter}")


def test_a_version_found_unactivated_comes_with_what_release_handler_has() -> None:
    """Only the `unactivated` line makes a failed first poll final; its listing says why."""
    said = (
        "edeliver=release 0.2.0 unpacked\nedeliver=release 0.1.0 permanent\n"
        "edeliver=unactivated unpacked\n"
    )
    found = hs.unactivated(said + "** (RuntimeError) 0.2.0 was not activated\n")
    assert found is not None and found.status == {"0.2.0": "unpacked", "0.1.0": "permanent"}
    assert hs.unactivated('** (RuntimeError) hello 0.2.0 is not running: ~c"0.1.0"\n') is None
    layout = Layout("/srv/app", "hello")
    assert "unactivated" in hs.permanent_script(layout, "0.2.0", activated=True)
    assert "unactivated" not in hs.permanent_script(layout, "0.2.0")


def test_every_value_in_a_hot_script_is_quoted_and_versions_are_checked() -> None:
    """A deploy path with spaces and quotes stays one word; a version with a quote is refused."""
    layout = Layout("/srv/it's here", "hello")
    script = hs.unpack_script(layout, "0.2.0", "/srv/it's here/.edeliver/uploads/x.tar.gz")
    assert "P='/srv/it'\"'\"'s here'" in script
    with pytest.raises(ValueError, match="not usable"):
        hs.install_script(layout, '0.2.0"; :os.cmd(~c"rm")')


def test_an_upgrade_package_is_stored_below_its_version_and_found_by_its_from_version(
    tmp_path: Path,
) -> None:
    """It never hides the full release of the same version, nor is listed as a version."""
    store = LocalDirectoryStore(tmp_path / "store")
    (tmp_path / "full").write_bytes(b"full release")
    (tmp_path / "package").write_bytes(b"upgrade package")
    asyncio.run(store.put(tmp_path / "full", Artifact("hello", "0.2.0", "", 0)))
    package = Artifact("hello", "0.2.0", "", 0, kind="upgrade", from_versions=("0.1.0",))
    asyncio.run(store.put(tmp_path / "package", package))
    assert asyncio.run(store.versions("hello")) == ["0.2.0"]
    assert asyncio.run(store.artifact("hello", "0.2.0")).kind == "release"
    found = asyncio.run(store.upgrade("hello", "0.1.0", "0.2.0"))
    assert found is not None and (found.kind, found.from_versions) == ("upgrade", ("0.1.0",))
    assert Path(found.location).read_bytes() == b"upgrade package"
    assert asyncio.run(store.upgrade("hello", "0.1.1", "0.2.0")) is None


def test_deployments_in_upgrade_mode_take_the_upgrade_shells() -> None:
    """The mode recorded on the deployment picks the shells (so a resume picks the same)."""
    full, hot = InMemoryNodeShells({}), InMemoryNodeShells({})
    services = Services(open_deployments(Path("."), ""), full, InMemoryReleaseStore([]),
                        FakeClock(), "ann@laptop", upgrade_shells=hot)  # fmt: skip
    assert services.shells_for("upgrade") is hot
    assert services.shells_for("release") is full
    services.deployments.close()


class World:
    """A project whose config names 3 fake nodes running the given versions."""

    def __init__(self, directory: Path, running: list[str | None]) -> None:
        self.project = directory
        (directory / ".deliver").mkdir()
        (directory / ".deliver/edeliver.toml").write_text(config_text(3))
        self.hosts = {f"n{i}": FakeHost(running=v, current=v) for i, v in enumerate(running)}

    def adapters(self, project: Path, config: Config) -> Adapters:
        return Adapters(InMemoryReleaseStore([artifact("0.2.0")]), InMemoryNodeShells(self.hosts))

    def edeliver(self, *args: str) -> Any:
        runtime = Runtime(
            project=self.project, clock=FakeClock(), user="ann@laptop", adapters=self.adapters,
            open_events=lambda project: open_deployments(project, ""),
        )  # fmt: skip
        return runner.invoke(app, list(args), obj=runtime)


def test_build_upgrade_without_the_old_release_in_the_store_says_how_to_get_it(
    tmp_path: Path,
) -> None:
    """Exit 2, one line naming the version, the store and the way to put it there."""
    world = World(tmp_path, ["0.1.0"] * 3)
    result = world.edeliver("build", "upgrade", "--from", "0.1.0", "--to", "0.2.0")
    assert result.exit_code == 2, result.output
    assert "version 0.1.0 of hello is not in the store" in result.output
    assert "`git checkout <its tag>` then `edeliver build`" in result.output


def test_build_upgrade_refuses_nodes_on_different_versions_and_offers_one_per_version(
    tmp_path: Path,
) -> None:
    """Exit 3, the nodes per version, and the per-version builds to run instead."""
    world = World(tmp_path, ["0.1.0", "0.1.1", "0.1.0"])
    result = world.edeliver("build", "upgrade", "--to", "0.2.0", "-e", "prod")
    assert result.exit_code == 3, result.output
    assert "0.1.0 on n0, n2; 0.1.1 on n1" in result.output
    assert "`edeliver build upgrade --from 0.1.0` and `edeliver build upgrade --from 0.1.1`" in (
        result.output.replace("\n", " ")
    )


def test_the_view_a_probe_reports_counts_only_when_the_vm_answered() -> None:
    """A probe's `releases_report`: the view when its ask exited 0 with a booted version;
    None when it failed, or when no VM ran (no `releases_rc` at all)."""
    said = "os=Linux\nedeliver=booted 0.1.0\nedeliver=release 0.1.0 permanent\n"
    assert hs.reported_releases(said + "releases_rc=0\n") == hs.parse_releases(said)
    assert hs.reported_releases(said + "releases_rc=1\n") is None
    assert hs.reported_releases(said) is None
    assert hs.reported_releases("releases_rc=0\n") is None  # answered, but named no boot


@pytest.mark.parametrize(
    ("said", "flag"),
    [
        ("vm_dist=-sname hello\n", "-sname hello"),
        ("vm_dist=-name hello@h.example\n", "-name hello@h.example"),
        ("vm_dist=\n", None),  # a VM without distribution
        ("vm_dist=-sname hello -eval x\n", None),  # more than a flag: never passed on
        ("vm_dist=-setcookie x\n", None),
        ("os=Linux\n", None),  # no VM answered
    ],
)
def test_the_vm_flag_a_probe_found_goes_into_the_scripts_only_when_it_is_a_node_name(
    said: str, flag: str | None
) -> None:
    """The hot scripts name the VM the probe found (`VM_DIST`, so no `vms` runs again), only
    by a `-sname`/`-name` flag; anything else and they look for the VM themselves."""
    assert hs.reported_vm_dist(said) == flag
    layout = Layout("/srv/app", "hello")
    for script in (
        hs.install_script(layout, "0.2.0", 3, flag),
        hs.permanent_script(layout, "0.2.0", 3, vm=flag),
        hs.unpack_script(layout, "0.2.0", "/srv/app/x.tar.gz", flag),
    ):
        assert ("\nVM_DIST=" in script) is (flag is not None)
        if flag:
            assert f"\nVM_DIST='{flag}'\n" in script
    assert "\nVM_DIST=" not in hs.install_script(layout, "0.2.0", 3, "-sname x -eval y")
