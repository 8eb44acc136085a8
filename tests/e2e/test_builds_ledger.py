"""examples/ledger (an umbrella with a git and a path dependency) built on a remote build host
(a real sshd node) and in a podman container: deps fetched there and cached between builds, only
the release's version inside, an unfetchable dependency refused by name."""

from __future__ import annotations

import json
import os
import pwd
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from edeliver.adapters.build.build_checks import BuildFailed
from edeliver.adapters.build.remote_build import CACHE_DIR
from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.cli.composition import Runtime
from edeliver.cli.rollout_commands import build_into_store
from edeliver.core.domain.errors import UsageError
from edeliver.core.domain.model import Artifact
from tests.support.build_image import IMAGE, PODMAN_GLOBAL, RUN_OPTIONS, ensure_image
from tests.support.ledger_project import (
    FILE_SUBMODULES,
    bare_tally,
    booted_version,
    entries,
    git,
    ledger_copy,
    ledger_env,
    loaded_version,
    report,
    stamp_as_submodule,
    unpack,
)

BUILD_PATH = "/srv/builds"
IN_CONTAINER = "/deps/tally.git"


@pytest.fixture(scope="module")
def build_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    fleet = LocalFleet(tmp_path_factory.mktemp("buildhost"), 1, deploy_path=BUILD_PATH)
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def build_host(build_fleet: LocalFleet) -> FleetNode:
    return build_fleet.nodes[0]


def _serve_tally(host: FleetNode, where: Path) -> str:
    """The bare repo inside the build host's path, owned by its user (git refuses others')."""
    bare = shutil.move(bare_tally(where), host.root / "tally.git")
    user = pwd.getpwnam(host.user)
    for path in [Path(bare), *Path(bare).rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    return f"{BUILD_PATH}/tally.git"


@pytest.fixture(scope="module")
def remote(
    build_fleet: LocalFleet, build_host: FleetNode, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("remote-ledger")
    known_hosts = root / "known_hosts"
    known_hosts.write_text(build_host.known_hosts_line + "\n")
    address = f"{build_host.user}@{build_host.host}:{BUILD_PATH}"
    config = (
        f'app = "ledger"\nknown_hosts = "{known_hosts}"\n[build]\nstrategy = "remote"\n'
        f'host = "{address}"\nport = {build_host.port}\n'
        f'identity_file = "{build_fleet.client_key}"\nrelease = "ledger"\n'
    )
    return ledger_copy(root, config), _serve_tally(build_host, root)


def _build(project: Path, version: str, tally_url: str) -> Artifact:
    return build_into_store(Runtime(project=project), env=ledger_env(version, tally_url))


def _stored(project: Path, version: str) -> Path:
    return project / f".deliver/releases/ledger/{version}/ledger-{version}.tar.gz"


def _holds_only(tarball: Path, version: str) -> None:
    assert [e for e in entries(tarball, "releases") if e[0].isdigit()] == [version]
    libs = entries(tarball, "lib")
    assert [lib for lib in libs if lib.startswith("ledger-")] == [f"ledger-{version}"]
    assert {"tally-0.3.0", "stamp-0.2.0", f"ledger_api-{version}"} <= set(libs)


def test_a_remote_build_fetches_the_deps_on_the_build_host_and_keeps_them(
    remote: tuple[Path, str], build_host: FleetNode, tmp_path: Path
) -> None:
    """deps.get runs on the build host; afterwards its per-app cache holds deps/ and _build/."""
    project, tally_url = remote
    stored = _build(project, "1.0.0", tally_url)
    assert stored.version == "1.0.0"
    _holds_only(_stored(project, "1.0.0"), "1.0.0")
    said = report(unpack(_stored(project, "1.0.0"), tmp_path))
    assert (said["total"], said["stamp"], said["version"]) == ("6", "stamped:ledger", "1.0.0")
    cache = build_host.root / CACHE_DIR / "ledger"
    assert (cache / "deps/tally/mix.exs").is_file() and (cache / "_build/prod/lib/tally").is_dir()
    assert sorted(p.name for p in build_host.root.iterdir()) == [CACHE_DIR, "tally.git"]


def test_a_warm_remote_build_at_a_version_from_the_environment_boots_that_version(
    remote: tuple[Path, str], tmp_path: Path
) -> None:
    """The cached _build holds 1.0.0's .app: the 1.1.0 build still ships and boots 1.1.0."""
    project, tally_url = remote
    _build(project, "1.1.0", tally_url)
    _holds_only(_stored(project, "1.1.0"), "1.1.0")
    assert booted_version(unpack(_stored(project, "1.1.0"), tmp_path)) == "1.1.0"


def test_a_remote_build_whose_dependency_cannot_be_fetched_names_it(
    remote: tuple[Path, str], build_host: FleetNode
) -> None:
    """One line: the build host, the dependency, git's reason; nothing stored; cache kept."""
    project, _ = remote
    missing = f"{BUILD_PATH}/gone.git"
    with pytest.raises(BuildFailed) as refused:
        _build(project, "1.2.0", missing)
    message = str(refused.value)
    assert message.startswith(f"build host {build_host.user}@{build_host.host}:")
    assert f"fetching dependency tally ({missing}) failed: fatal: '{missing}'" in message
    assert "\n" not in message and refused.value.exit_code == 1
    assert not _stored(project, "1.2.0").parent.exists()
    assert (build_host.root / CACHE_DIR / "ledger/deps").is_dir()


def test_a_container_build_fetches_the_deps_inside_and_caches_them_here(tmp_path: Path) -> None:
    """The bare repo is mounted into the container; deps/ and _build/ stay in .deliver/cache."""
    assert shutil.which("podman"), "scripts/dev setup installs podman"
    ensure_image()
    bare = bare_tally(tmp_path)
    options = [*RUN_OPTIONS, "-v", f"{bare}:{IN_CONTAINER}:ro"]
    project = ledger_copy(tmp_path, _container_config(options))
    _build(project, "2.0.0", IN_CONTAINER)
    _build(project, "2.1.0", IN_CONTAINER)
    _holds_only(_stored(project, "2.1.0"), "2.1.0")
    said = report(unpack(_stored(project, "2.1.0"), tmp_path))
    assert (said["total"], said["stamp"], said["version"]) == ("6", "stamped:ledger", "2.1.0")
    assert (project / ".deliver/cache/container-build/deps/tally/mix.exs").is_file()


def test_a_remote_build_of_an_unknown_release_is_refused_before_fetching(
    remote: tuple[Path, str],
) -> None:
    """One line naming the release and the known ones, exit 2, nothing stored."""
    project, tally_url = remote
    config = project / ".deliver/edeliver.toml"
    original = config.read_text()
    config.write_text(original.replace('release = "ledger"', 'release = "ledgr"'))
    try:
        with pytest.raises(UsageError) as refused:
            _build(project, "1.3.0", tally_url)
    finally:
        config.write_text(original)
    assert str(refused.value) == (
        "build.release: unknown release ledgr; mix.exs defines: ledger, ledger_lite"
    )
    assert refused.value.exit_code == 2 and not _stored(project, "1.3.0").parent.exists()


def test_a_remote_auto_version_build_gives_every_umbrella_app_the_suffix(
    remote: tuple[Path, str], tmp_path: Path
) -> None:
    """`[build] auto_version` on a build host (the script containers run too): both apps of the
    umbrella carry the commit count and revision, in the tarball and as the release loads them."""
    project, tally_url = remote
    config = project / ".deliver/edeliver.toml"
    original = config.read_text()
    auto = 'release = "ledger"\nauto_version = ["commit_count", "revision"]'
    config.write_text(original.replace('release = "ledger"', auto))
    try:
        stored = _build(project, "1.4.0", tally_url)
    finally:
        config.write_text(original)
    count, revision = (
        git(project, "rev-list", "--count", "HEAD"),
        git(project, "rev-parse", "--short=7", "HEAD"),
    )
    version = f"1.4.0+{count}.{revision}"
    assert stored.version == version
    _holds_only(_stored(project, version), version)
    assert loaded_version(unpack(_stored(project, version), tmp_path), "ledger_api") == version


def test_a_remote_build_sends_the_submodules_at_their_recorded_commits(
    remote: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path dependency vendor/stamp as a git submodule: its files travel with the sources
    (git archive alone leaves the directory empty), so the build host compiles it."""
    for name, value in FILE_SUBMODULES.items():
        monkeypatch.setenv(name, value)
    config = (remote[0] / ".deliver/edeliver.toml").read_text()
    project = ledger_copy(tmp_path, config)
    stamp_as_submodule(project, tmp_path)
    _build(project, "1.5.0", remote[1])
    said = report(unpack(_stored(project, "1.5.0"), tmp_path))
    assert (said["stamp"], said["version"]) == ("stamped:ledger", "1.5.0")


# Notes tally's sum, the stage, the MIX_ENV and the directory it ran in, into SUM_FILE.
BUILD_TASK = """defmodule Ledger.Build.Sum do
  use Edeliver.Task, stage: :post_erlang_clean_compile, where: :build

  def run(ctx) do
    said = "#{Tally.sum([1, 2, 3])} at #{ctx.stage} in #{Mix.env()} from #{File.cwd!()}"
    File.write!("SUM_FILE", said)
    ctx
  end
end
"""


def test_a_build_stage_elixir_task_on_a_build_host_uses_a_module_of_a_dependency(
    remote: tuple[Path, str], build_host: FleetNode, tmp_path: Path
) -> None:
    """`where: :build` on a remote build host: `mix run` in the per-build directory there, with
    the build's MIX_ENV, calls tally (a git dependency fetched on the build host); the release
    built after it still carries the build's auto_version in every umbrella app."""
    config = (remote[0] / ".deliver/edeliver.toml").read_text()
    auto = 'release = "ledger"\nauto_version = ["commit_count", "revision"]'
    project = ledger_copy(tmp_path, config.replace('release = "ledger"', auto))
    (project / ".deliver/tasks").mkdir()
    # Beside the per-build directory (removed after the build), under the host's path.
    (project / ".deliver/tasks/sum.ex").write_text(BUILD_TASK.replace("SUM_FILE", "../build_sum"))
    summed = build_host.root / "build_sum"
    try:
        stored = _build(project, "1.6.0", remote[1])
        said = summed.read_text()
        assert said.startswith(f"6 at post_erlang_clean_compile in prod from {BUILD_PATH}/ledger-")
    finally:
        summed.unlink(missing_ok=True)
    count, revision = (
        git(project, "rev-list", "--count", "HEAD"),
        git(project, "rev-parse", "--short=7", "HEAD"),
    )
    version = f"1.6.0+{count}.{revision}"
    assert stored.version == version
    _holds_only(_stored(project, version), version)
    root = unpack(_stored(project, version), tmp_path)
    assert loaded_version(root, "ledger_api") == version
    assert loaded_version(root, "ledger") == version


def test_a_build_stage_elixir_task_in_a_container_build_uses_a_module_of_a_dependency(
    tmp_path: Path,
) -> None:
    """`where: :build` in a container build: `mix run` by the image's Mix in a container on the
    mounted sources (/build), with the tally the build fetched there."""
    ensure_image()
    bare = bare_tally(tmp_path)
    options = [*RUN_OPTIONS, "-v", f"{bare}:{IN_CONTAINER}:ro"]
    project = ledger_copy(tmp_path, _container_config(options))
    (project / ".deliver/tasks").mkdir()
    (project / ".deliver/tasks/sum.ex").write_text(BUILD_TASK.replace("SUM_FILE", "build_sum"))
    _build(project, "2.4.0", IN_CONTAINER)
    assert (project / ".deliver/build/container-src/build_sum").read_text() == (
        "6 at post_erlang_clean_compile in prod from /build"
    )
    _holds_only(_stored(project, "2.4.0"), "2.4.0")


def test_a_container_build_sends_the_submodules_at_their_recorded_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same submodule reaches a podman build's sources."""
    for name, value in FILE_SUBMODULES.items():
        monkeypatch.setenv(name, value)
    ensure_image()
    bare = bare_tally(tmp_path)
    project = ledger_copy(
        tmp_path, _container_config([*RUN_OPTIONS, "-v", f"{bare}:{IN_CONTAINER}:ro"])
    )
    stamp_as_submodule(project, tmp_path)
    _build(project, "2.3.0", IN_CONTAINER)
    said = report(unpack(_stored(project, "2.3.0"), tmp_path))
    assert (said["stamp"], said["version"]) == ("stamped:ledger", "2.3.0")


def _container_config(run_options: list[str]) -> str:
    return (
        f'app = "ledger"\n[build]\nstrategy = "docker"\ncli = "podman"\nimage = "{IMAGE}"\n'
        f"global_options = {json.dumps(PODMAN_GLOBAL)}\nrun_options = {json.dumps(run_options)}\n"
        'release = "ledger"\n'
    )


def test_a_container_build_whose_dependency_cannot_be_fetched_names_it(tmp_path: Path) -> None:
    """No repository mounted at the URL: one line naming tally, exit 1, nothing stored."""
    ensure_image()
    project = ledger_copy(tmp_path, _container_config(RUN_OPTIONS))
    with pytest.raises(BuildFailed) as refused:
        _build(project, "2.2.0", IN_CONTAINER)
    assert str(refused.value) == (
        f"the {IMAGE} container: fetching dependency tally ({IN_CONTAINER}) failed: "
        f"fatal: '{IN_CONTAINER}' does not appear to be a git repository"
    )
    assert not _stored(project, "2.2.0").parent.exists()
