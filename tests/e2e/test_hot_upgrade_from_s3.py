"""A hot code upgrade of 2 real nodes from an S3 store (moto's server over HTTP).

v1 is deployed as a full release, `edeliver build upgrade` puts the 0.1.0 -> 0.2.0 package into
S3 beside 0.2.0, and `edeliver upgrade ENV` applies it with release_handler: the nodes pull the
package straight from S3. What runs is asked of the nodes themselves (`bin/hello rpc`).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from edeliver.adapters.local_fleet import LocalFleet
from edeliver.adapters.mix_build import local_platform
from edeliver.adapters.s3_store import S3ReleaseStore
from edeliver.cli.demo import prepare_project
from edeliver.core.model import Artifact
from tests.support.hello_release import tarball
from tests.support.moto import CREDENTIALS, moto_server, s3_client
from tests.support.nodes import ssh
from tests.support.store_project import StoreProject

BUCKET, PREFIX = "edeliver-hot", "teams/hello"
V1, V2 = "0.1.0", "0.2.0"


class HotS3Project(StoreProject):
    """The hello project with its store in S3; the deployer has AWS credentials in its env."""

    endpoint: str

    def edeliver(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def,override]
        return super().edeliver(*args, timeout=timeout, env={**CREDENTIALS, **(env or {})})

    def ask(self, elixir: str) -> dict[str, str]:
        """Each node's answer to `elixir`, evaluated in its running VM."""
        answers = {}
        for node in self.fleet.nodes:
            command = f"cd {node.path}/current && bin/hello rpc {quoted(elixir)}"
            said = ssh(self.fleet, node, command, timeout=60)
            assert said.returncode == 0, said.stderr
            answers[node.name] = said.stdout.strip()
        return answers


def quoted(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def hot_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HotS3Project]:
    """2 real nodes, an environment `hot` in release mode, hello v1 and v2 (full) in S3."""
    root = tmp_path_factory.mktemp("hot-s3")
    fleet = LocalFleet(root / "fleet", 2)
    with moto_server() as endpoint:
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        fleet.start()
        try:
            directory = prepare_project(root, fleet, "hot", "max_parallel = 2")
            with (directory / ".deliver/edeliver.toml").open("a") as config:
                config.write(
                    f'\n[store]\nurl = "s3://{BUCKET}/{PREFIX}"\nendpoint_url = "{endpoint}"\n'
                    '\n[transfer]\nmode = "pull"\n'
                )
            store = S3ReleaseStore(BUCKET, PREFIX, root / "put-cache", endpoint_url=endpoint)
            with mock.patch.dict(os.environ, CREDENTIALS):  # as a CI builder would put them
                for version, variant in ((V1, "good"), (V2, "v2")):
                    built = Artifact("hello", version, "", 0, platform=local_platform())
                    store.put(tarball(version, variant), built)
            project = HotS3Project(directory, fleet)
            project.endpoint = endpoint
            yield project
        finally:
            fleet.stop()


def test_a_package_built_into_s3_upgrades_the_nodes_hot(hot_s3: HotS3Project) -> None:
    fleet = hot_s3.fleet
    assert report(hot_s3.deploy("hot", V1))["nodes"].keys() == set(fleet.names)
    assert set(hot_s3.ask("IO.puts(Hello.version())").values()) == {V1}

    built = report(hot_s3.edeliver("build", "upgrade", "--to", V2, "-e", "hot", "--json"))
    package = f"{PREFIX}/hello/{V2}/upgrades/{V1}/hello-{V2}.tar.gz"
    assert (built["from"], built["to"], built["location"]) == (V1, V2, package)
    listed = hot_s3.edeliver("releases", "--json")
    assert [row["version"] for row in json.loads(listed.stdout)] == [V1, V2], listed.stderr

    pids = hot_s3.ask("IO.puts(System.pid())")
    upgraded = report(hot_s3.edeliver("upgrade", "hot", "--json"))
    assert upgraded["routes"] == dict.fromkeys(fleet.names, f"hot upgrade from {V1}")
    assert hot_s3.ask("IO.puts(System.pid())") == pids  # the same BEAM, never restarted
    releases = hot_s3.ask(
        "IO.inspect(Enum.sort(for {_, v, _, s} <- :release_handler.which_releases(), "
        "do: {to_string(v), s}))"
    )
    assert set(releases.values()) == {f'[{{"{V1}", :old}}, {{"{V2}", :permanent}}]'}
    assert set(hot_s3.ask("IO.puts(Hello.version())").values()) == {V2}
    # The nodes pulled the package from S3; only the releases it was built from came here.
    assert sorted(p.name for p in hot_s3.cached()) == [f"hello-{V1}.tar.gz", f"hello-{V2}.tar.gz"]
