"""Build strategies end to end: a remote build host (a real sshd node) into S3, pulled by 3 real
nodes; a podman build into a local store, pushed. The nodes say what runs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from edeliver.adapters.build.mix_build import BuildFailed, local_platform
from edeliver.adapters.build.remote_build import CACHE_DIR
from edeliver.adapters.local.config_file import load_config
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.cli.composition import Runtime
from edeliver.cli.demo import prepare_project
from edeliver.cli.rollout_commands import build_into_store
from edeliver.core.domain.errors import UsageError
from tests.e2e.conftest import Project
from tests.support.build_image import IMAGE, PODMAN_GLOBAL, RUN_OPTIONS, ensure_image
from tests.support.moto import CREDENTIALS, free_port, moto_server, s3_client

BUCKET = "builds"
REMOTE, CONTAINER = "0.4.0", "0.5.0"
BUILD_PATH = "/srv/builds"


@pytest.fixture(scope="module")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalFleet, LocalFleet]]:
    root = tmp_path_factory.mktemp("builds")
    fleet = LocalFleet(root / "fleet", 3)
    build_fleet = LocalFleet(root / "buildhost", 1, deploy_path=BUILD_PATH, name_prefix="build")
    try:
        fleet.start()
        build_fleet.start()
        with fleet.known_hosts.open("a") as known:
            known.write(build_fleet.nodes[0].known_hosts_line + "\n")
        yield fleet, build_fleet
    finally:
        fleet.stop()
        build_fleet.stop()


def _git_project(root: Path, fleet: LocalFleet, extra: str) -> Path:
    directory = prepare_project(root, fleet, "all", "max_parallel = 3")
    with (directory / ".deliver/edeliver.toml").open("a") as config:
        config.write(extra)
    for command in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "-qm", "hello"],
    ):
        subprocess.run(["git", "-C", str(directory), *command], check=True)
    return directory


def _head(directory: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(directory), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _env(version: str, variant: str = "good") -> dict[str, str]:
    return {"HELLO_VERSION": version, "HELLO_VARIANT": variant, "HEX_OFFLINE": "1"}


REMOTE_STAGES = (
    "pre_init_app_remotely", "post_init_app_remotely", "pre_git_push", "post_git_push",
    "pre_erlang_get_and_update_deps", "post_erlang_get_and_update_deps",
    "pre_erlang_clean_compile", "post_erlang_clean_compile",
    "pre_erlang_generate_release", "post_erlang_generate_release",
)  # fmt: skip


def _stage_tasks(directory: Path, stages: tuple[str, ...], marks: str) -> None:
    """A `where: build` shell task per stage that notes the stage, the directory it runs in and
    whether the compile's output is there yet."""
    tasks = directory / ".deliver/tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    for number, stage in enumerate(stages):
        (tasks / f"{number}_{stage}.sh").write_text(
            f"# stage: {stage}\n# where: build\n"
            "state=$([ -d _build/prod/lib/hello ] && echo compiled || echo clean)\n"
            f'echo "$STAGE $(basename "$PWD") $state" >> {marks}\n'
        )


@pytest.fixture(scope="module")
def remote_project(
    fleets: tuple[LocalFleet, LocalFleet], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Project, str]]:
    fleet, build_fleet = fleets
    host = build_fleet.nodes[0]
    with moto_server() as endpoint, mock.patch.dict(os.environ, CREDENTIALS):
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        directory = _git_project(
            tmp_path_factory.mktemp("remote"),
            fleet,
            f'\n[store]\nurl = "s3://{BUCKET}/hello"\nendpoint_url = "{endpoint}"\n'
            '[transfer]\nmode = "pull"\n'
            f'[build]\nstrategy = "remote"\nhost = "{host.user}@{host.host}:{BUILD_PATH}"\n'
            f'port = {host.port}\nidentity_file = "{build_fleet.client_key}"\n',
        )
        yield Project(directory, fleet), endpoint


def test_a_remote_build_goes_to_s3_and_the_nodes_pull_and_run_it(
    remote_project: tuple[Project, str], fleets: tuple[LocalFleet, LocalFleet]
) -> None:
    """git archive of HEAD to the build host, mix release there, put by it into S3 (a presigned
    PUT: the tarball never comes back here), pulled by each node."""
    project, endpoint = remote_project
    marks = fleets[1].nodes[0].home / "stage-marks"
    _stage_tasks(project.directory, REMOTE_STAGES, '"$HOME/stage-marks"')
    stored = build_into_store(Runtime(project=project.directory), env=_env(REMOTE))
    # edeliver 1.x's build hooks, on the build host, in the per-build dir, in 1.x order.
    build_dir = f"hello-{_head(project.directory)[:12]}"
    lines = marks.read_text().splitlines()
    assert [line.split()[0] for line in lines] == list(REMOTE_STAGES)
    assert all(line.split()[1].startswith(build_dir) for line in lines)
    assert lines[REMOTE_STAGES.index("pre_erlang_generate_release")].endswith(" compiled")
    assert (stored.version, stored.git_revision) == (REMOTE, _head(project.directory))
    assert stored.platform == local_platform()  # the build host shares this machine's /usr
    assert stored.otp and stored.elixir and stored.erts.startswith("13.")
    key = f"hello/hello/{REMOTE}/manifest.json"
    manifest = json.loads(s3_client(endpoint).get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert manifest["git_revision"] == stored.git_revision and manifest["built_at"]
    assert not (project.directory / f".deliver/build/hello-{REMOTE}.tar.gz").exists()
    key = f"hello/hello/{REMOTE}/hello-{REMOTE}.tar.gz"
    body = s3_client(endpoint).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == stored.sha256 == manifest["sha256"]
    result = project.edeliver("deploy", "all", "--version", REMOTE, env=CREDENTIALS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.running() == dict.fromkeys(project.fleet.names, REMOTE)
    assert not list((project.directory / ".deliver/cache").rglob("*.tar.gz"))  # pulled


def test_the_build_dir_on_the_build_host_is_removed_after_and_versions_stay_immutable(
    remote_project: tuple[Project, str], fleets: tuple[LocalFleet, LocalFleet]
) -> None:
    """A rebuild of a stored version is another build: refused, and its build dir gone too."""
    project, _ = remote_project
    with pytest.raises(UsageError, match=f"hello {REMOTE} is already in the store"):
        build_into_store(Runtime(project=project.directory), env=_env(REMOTE))
    # Only the app's deps cache stays (deps/ and _build/ of the last build).
    assert [path.name for path in fleets[1].nodes[0].root.iterdir()] == [CACHE_DIR]


def test_a_dirty_checkout_is_warned_and_a_failing_build_shows_its_log_tail(
    remote_project: tuple[Project, str], capsys: pytest.CaptureFixture[str]
) -> None:
    project, _ = remote_project
    readme = project.directory / "lib/hello.ex"
    readme.write_text(readme.read_text() + "\n# an uncommitted change\n")
    try:
        with pytest.raises(
            BuildFailed, match=r"(?s)mix deps.get failed on the build host .*HELLO_VARIANT must be"
        ):
            build_into_store(Runtime(project=project.directory), env=_env("0.4.1", "bogus"))
    finally:
        subprocess.run(["git", "-C", str(project.directory), "checkout", "--", "."], check=True)
    assert "uncommitted changes are not built" in capsys.readouterr().err


def test_an_unreachable_build_host_is_one_clear_error(remote_project: tuple[Project, str]) -> None:
    project, _ = remote_project
    config = project.directory / ".deliver/edeliver.toml"
    original = config.read_text()
    port = load_config(project.directory).build.port
    config.write_text(original.replace(f"port = {port}\n", f"port = {free_port()}\n"))
    try:
        result = project.edeliver("build", env=CREDENTIALS)
    finally:
        config.write_text(original)
    assert result.returncode == 1
    assert (
        "build host edfleet-build1@127.0.0.1" in result.stderr and "cannot connect" in result.stderr
    )


def test_a_podman_build_goes_to_a_local_store_and_is_pushed(
    fleets: tuple[LocalFleet, LocalFleet], tmp_path: Path
) -> None:
    """The image was made by debootstrap + podman import (cached); sources mounted into it."""
    assert shutil.which("podman"), "scripts/dev setup installs podman"
    ensure_image()
    fleet, _ = fleets
    directory = _git_project(
        tmp_path,
        fleet,
        f'\n[build]\nstrategy = "docker"\ncli = "podman"\nimage = "{IMAGE}"\n'
        f"global_options = {json.dumps(PODMAN_GLOBAL)}\nrun_options = {json.dumps(RUN_OPTIONS)}\n",
    )
    project = Project(directory, fleet)
    stages = REMOTE_STAGES[4:]  # a container build has no init or push of its own
    _stage_tasks(directory, stages, '"$PWD/../stage-marks"')
    stored = build_into_store(Runtime(project=directory), env=_env(CONTAINER))
    lines = (directory / ".deliver/build/stage-marks").read_text().splitlines()
    compiled = stages.index("post_erlang_clean_compile")
    assert lines == [
        f"{stage} container-src {'compiled' if i >= compiled else 'clean'}"
        for i, stage in enumerate(stages)
    ]
    assert (stored.version, stored.git_revision) == (CONTAINER, _head(directory))
    assert stored.elixir.startswith("1.14") and stored.platform.libc == "glibc"
    result = project.deploy("all", CONTAINER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.running() == dict.fromkeys(fleet.names, CONTAINER)
