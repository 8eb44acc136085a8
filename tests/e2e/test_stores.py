"""Releases kept in S3 (moto's server over HTTP) and deployed to 3 real nodes, pulled or pushed.

What runs is asked of the nodes themselves (OpenSSH + `bin/hello rpc`).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from unittest import mock

import pytest

from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.store.s3_store import S3ReleaseStore
from edeliver.core.domain.model import Artifact, Platform
from tests.e2e.conftest import GOOD, NEXT
from tests.support.hello_release import tarball
from tests.support.moto import CREDENTIALS, s3_client
from tests.support.store_project import S3Project, s3_hello_project

BUCKET, PREFIX = "edeliver-releases", "teams/hello"
OLD = "0.0.1"


@pytest.fixture(scope="module")
def s3_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Project]:
    root = tmp_path_factory.mktemp("stores")
    with s3_hello_project(root, 3, "all", "max_parallel = 3", BUCKET, PREFIX) as project:
        store = S3ReleaseStore(BUCKET, PREFIX, root / "put-cache", endpoint_url=project.endpoint)
        _put_releases(store)
        yield project


def _put_releases(store: S3ReleaseStore) -> None:
    """Put as a CI builder would, its credentials in its environment."""
    platform = local_platform()
    with mock.patch.dict(os.environ, CREDENTIALS):
        _put_each(store, platform)


def _put_each(store: S3ReleaseStore, platform: Platform) -> None:
    asyncio.run(
        store.put(tarball(GOOD), Artifact("hello", OLD, "", 0, platform=platform))
    )  # never deployed
    for version in (GOOD, NEXT):
        asyncio.run(
            store.put(tarball(version), Artifact("hello", version, "", 0, platform=platform))
        )


def _report(result) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_nodes_pull_the_release_straight_from_s3_and_run_it(s3_project: S3Project) -> None:
    """Pull mode: each node curls a presigned URL; the deployer never holds the tarball."""
    result = s3_project.deploy("all", GOOD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert s3_project.running() == dict.fromkeys(s3_project.fleet.names, GOOD)
    assert s3_project.cached() == []
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in result.stdout + result.stderr
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in json.dumps(s3_project.events())


def test_releases_lists_what_s3_holds(s3_project: S3Project) -> None:
    result = s3_project.edeliver("releases", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["releases"]
    assert [r["version"] for r in rows] == [OLD, GOOD, NEXT]
    assert all(r["platform"] == str(local_platform()) for r in rows)


def test_a_version_not_in_s3_is_refused_naming_what_is(s3_project: S3Project) -> None:
    result = s3_project.deploy("all", "9.9.9")
    assert result.returncode == 2
    assert f"(it has: {OLD}, {GOOD}, {NEXT})" in result.stderr


def test_a_corrupted_object_is_refused_on_every_node_before_any_switch(
    s3_project: S3Project,
) -> None:
    """The object is tampered with in S3: each node's sha256 check refuses it; all stay on GOOD."""
    s3_project.ensure_all_on(GOOD)
    client = s3_client(s3_project.endpoint)
    key = f"{PREFIX}/hello/{NEXT}/hello-{NEXT}.tar.gz"
    original = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=key, Body=original[:-1024] + b"\0" * 1024)
    try:
        for mode in ("pull", "push"):
            s3_project.transfer(mode)
            result = s3_project.deploy("all", NEXT)
            assert result.returncode == 1, result.stdout + result.stderr
            assert s3_project.running() == dict.fromkeys(s3_project.fleet.names, GOOD)
            said = json.dumps(s3_project.events())
            assert ("checksum mismatch" if mode == "pull" else "corrupted in the store") in said
            assert not any(s3_project.uploads(NEXT).values())
            assert s3_project.cached() == []
    finally:
        client.put_object(Bucket=BUCKET, Key=key, Body=original)
        s3_project.transfer("pull")


def test_a_push_from_s3_uploads_one_verified_local_copy(s3_project: S3Project) -> None:
    s3_project.push_runs_one_verified_copy(GOOD, NEXT)


def test_prune_keeps_what_runs_and_what_each_node_would_roll_back_to(
    s3_project: S3Project,
) -> None:
    """GOOD then NEXT deployed: --keep 1 keeps NEXT (running, newest) and GOOD (rollback)."""
    s3_project.ensure_all_on(GOOD)
    assert s3_project.deploy("all", NEXT).returncode == 0
    result = s3_project.edeliver("releases", "prune", "--keep", "1", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["removed"] == [OLD]
    assert plan["kept"][GOOD].startswith("the rollback target on node")
    listed = s3_client(s3_project.endpoint).list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)
    assert not [o["Key"] for o in listed["Contents"] if f"/{OLD}/" in o["Key"]]


def test_a_release_built_for_another_platform_is_refused_before_any_upload(
    s3_project: S3Project, tmp_path: Path
) -> None:
    """An aarch64 build for x86_64 nodes: exit 3 naming both, nothing fetched by any node."""
    s3_project.ensure_all_on(GOOD)
    other = replace(
        local_platform(), arch="aarch64" if local_platform().arch != "aarch64" else "x86_64"
    )
    store = S3ReleaseStore(BUCKET, PREFIX, tmp_path, endpoint_url=s3_project.endpoint)
    with mock.patch.dict(os.environ, CREDENTIALS):
        asyncio.run(store.put(tarball(GOOD), Artifact("hello", "0.9.0", "", 0, platform=other)))
    result = s3_project.deploy("all", "0.9.0")
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"release built for {other}, but nodes" in result.stderr
    assert not any(s3_project.uploads("0.9.0").values())
    assert s3_project.running() == dict.fromkeys(s3_project.fleet.names, GOOD)
