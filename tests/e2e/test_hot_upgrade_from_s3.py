"""A hot code upgrade of 2 real nodes from an S3 store (moto's server over HTTP).

v1 is deployed as a full release, `edeliver build upgrade` puts the 0.1.0 -> 0.2.0 package into
S3 beside 0.2.0, and `edeliver upgrade ENV` applies it with release_handler: the nodes pull the
package straight from S3. What runs is asked of the nodes themselves (`bin/hello rpc`).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from unittest import mock

import pytest

from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.store.s3_store import S3ReleaseStore
from edeliver.core.domain.model import Artifact
from tests.support.hello_release import tarball
from tests.support.moto import CREDENTIALS
from tests.support.nodes import ask, report
from tests.support.store_project import S3Project, s3_hello_project

BUCKET, PREFIX = "edeliver-hot", "teams/hello"
V1, V2 = "0.1.0", "0.2.0"


@pytest.fixture(scope="module")
def hot_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Project]:
    """2 real nodes, an environment `hot` in release mode, hello v1 and v2 (full) in S3."""
    root = tmp_path_factory.mktemp("hot-s3")
    with s3_hello_project(root, 2, "hot", "max_parallel = 2", BUCKET, PREFIX) as project:
        store = S3ReleaseStore(BUCKET, PREFIX, root / "put-cache", endpoint_url=project.endpoint)
        with mock.patch.dict(os.environ, CREDENTIALS):  # as a CI builder would put them
            for version, variant in ((V1, "good"), (V2, "v2")):
                built = Artifact("hello", version, "", 0, platform=local_platform())
                asyncio.run(store.put(tarball(version, variant), built))
        yield project


def test_a_package_built_into_s3_upgrades_the_nodes_hot(hot_s3: S3Project) -> None:
    fleet = hot_s3.fleet
    assert report(hot_s3.deploy("hot", V1))["nodes"].keys() == set(fleet.names)
    assert set(ask(fleet, "IO.puts(Hello.version())").values()) == {V1}

    built = report(hot_s3.edeliver("build", "upgrade", "--to", V2, "-e", "hot", "--json"))
    package = f"{PREFIX}/hello/{V2}/upgrades/{V1}/hello-{V2}.tar.gz"
    assert (built["from"], built["to"], built["location"]) == (V1, V2, package)
    listed = hot_s3.edeliver("releases", "--json")
    releases = json.loads(listed.stdout)["releases"]
    assert [row["version"] for row in releases] == [V1, V2], listed.stderr

    hot_s3.upgrade_hot("hot", V1, V2)
    # The nodes pulled the package from S3; only the releases it was built from came here.
    assert sorted(p.name for p in hot_s3.cached()) == [f"hello-{V1}.tar.gz", f"hello-{V2}.tar.gz"]
