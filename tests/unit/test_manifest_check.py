"""Manifests read field by field: every bad field named with the store's key, exit 2."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edeliver.adapters.events.event_store import open_deployments
from edeliver.adapters.local.clock import FakeClock
from edeliver.adapters.node.fakes import FakeHost, Faults, InMemoryNodeShells
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.adapters.store.manifest_check import checked_manifest
from edeliver.cli.composition import Adapters
from edeliver.cli.main import Runtime, app
from edeliver.core.domain.config import Config
from edeliver.core.domain.errors import UsageError
from edeliver.core.domain.model import Artifact
from tests.support.simulation import config_text

GOOD: dict[str, Any] = {
    "app": "hello", "version": "0.2.0", "sha256": "a" * 64, "size": 10, "kind": "release",
    "platform": {"os": "linux", "arch": "x86_64", "libc": "glibc", "libc_version": "2.36"},
    "from_versions": [], "git_revision": "abc",
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"size": None}, "size: expected a non-negative integer, got null"),
        ({"size": -1}, "size: expected a non-negative integer, got -1"),
        ({"size": True}, "size: expected a non-negative integer, got true"),
        ({"size": "10"}, 'size: expected a non-negative integer, got "10"'),
        ({"sha256": "ABC"}, 'sha256: expected 64 lower-case hex digits, got "ABC"'),
        ({"app": None}, "app: expected a lower-case OTP app name, got null"),
        ({"version": "../x"}, 'version: expected a version usable as a directory name, got "../x"'),
        ({"kind": "tarball"}, 'kind: expected "release" or "upgrade", got "tarball"'),
        ({"platform": {"os": 1}}, "platform: expected an object of strings"),
        ({"platform": {"cpu": "x"}}, "platform: expected an object of strings"),
        ({"from_versions": "0.1.0"}, 'from_versions: expected a list of versions, got "0.1.0"'),
        ({"otp": 25}, "otp: expected a string, got 25"),
    ],
)
def test_each_bad_field_is_named_with_where_the_manifest_is(
    change: dict[str, Any], said: str
) -> None:
    """The error reads `<where>: <field>: expected …, got <the JSON value>`."""
    with pytest.raises(UsageError) as refused:
        checked_manifest(json.dumps({**GOOD, **change}), "s3://b/hello/0.2.0/manifest.json")
    assert str(refused.value).startswith(f"s3://b/hello/0.2.0/manifest.json: {said}")
    assert refused.value.exit_code == 2


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", '"a string"'])
def test_a_manifest_that_is_not_a_json_object_is_refused(text: str) -> None:
    """Not JSON, or JSON but not an object: one line naming where."""
    with pytest.raises(UsageError, match=r"^where: (not JSON|expected a JSON object)"):
        checked_manifest(text, "where")


def test_a_good_manifest_passes_whole() -> None:
    """Every known field of the right type is kept as it was."""
    assert checked_manifest(json.dumps(GOOD), "where") == GOOD


def store_with(tmp_path: Path, change: dict[str, Any]) -> tuple[LocalDirectoryStore, Path]:
    """A local store holding hello 0.2.0 whose manifest then had `change` made to it."""
    store = LocalDirectoryStore(tmp_path / "store")
    tarball = tmp_path / "t.tar.gz"
    tarball.write_bytes(b"x")
    asyncio.run(store.put(tarball, Artifact("hello", "0.2.0", "", 0)))
    manifest = tmp_path / "store/hello/0.2.0/manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **change}))
    return store, manifest


def test_the_local_store_refuses_a_manifest_with_a_null_size_naming_its_file(
    tmp_path: Path,
) -> None:
    """`"size": null` in a local store: UsageError naming the manifest's path and the field."""
    store, manifest = store_with(tmp_path, {"size": None})
    with pytest.raises(UsageError, match=f"^{manifest}: size: expected a non-negative integer"):
        asyncio.run(store.artifact("hello", "0.2.0"))


def test_a_manifest_kept_under_another_version_is_refused(tmp_path: Path) -> None:
    """A manifest copied into the wrong version's dir names the version it says and where."""
    store, _ = store_with(tmp_path, {"version": "0.3.0"})
    with pytest.raises(UsageError, match=r"version: expected '0\.2\.0' \(where it is kept\)"):
        asyncio.run(store.artifact("hello", "0.2.0"))


def test_a_deploy_of_a_version_with_a_null_size_is_refused_before_the_lock(
    tmp_path: Path,
) -> None:
    """`edeliver deploy`: exit 2, one line naming the manifest and the field; no deployment
    was started (none in the history), no node touched."""
    (tmp_path / ".deliver").mkdir()
    (tmp_path / ".deliver/edeliver.toml").write_text(config_text(2, step_timeout=30))
    store, manifest = store_with(tmp_path, {"size": None})
    hosts = {"n0": FakeHost(), "n1": FakeHost()}

    def adapters(project: Path, config: Config) -> Adapters:
        return Adapters(store, InMemoryNodeShells(hosts, Faults()))

    runtime = Runtime(
        project=tmp_path, clock=FakeClock(), user="ann@laptop", adapters=adapters,
        open_events=lambda project: open_deployments(project, ""),
    )  # fmt: skip
    result = CliRunner().invoke(app, ["deploy", "prod", "--version", "0.2.0"], obj=runtime)
    assert result.exit_code == 2
    assert f"{manifest}: size: expected a non-negative integer, got null" in result.stderr
    history = CliRunner().invoke(app, ["history", "--json"], obj=runtime)
    assert json.loads(history.stdout)["deployments"] == []
    assert {host.running for host in hosts.values()} == {None}
