"""A hot code upgrade of 2 real nodes from a store host over SSH, in push mode.

The store `user@host:/path` is one more real sshd node. The environment is in mode "upgrade":
v1 goes out as a full release (no VM answers yet), `edeliver build upgrade` puts the
0.1.0 -> 0.2.0 package on the store host beside 0.2.0, and `edeliver upgrade ENV` applies it with
release_handler. In push mode the deployer downloads a checksum-verified copy of each package
and uploads it to the nodes over SFTP; the nodes hold no key to the store host. What runs is
asked of the nodes themselves (OpenSSH + `bin/hello rpc`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.nodes import ask, report
from tests.support.store_project import STORE_PATH, StoreHostProject, store_host_hello_project

V1, V2 = "0.1.0", "0.2.0"


@pytest.fixture(scope="module")
def hot_store_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreHostProject]:
    """2 real nodes, a store host with hello v1, an environment `hot` in upgrade mode, push."""
    root = tmp_path_factory.mktemp("hot-store-host")
    policy = 'mode = "upgrade"\nmax_parallel = 2'
    with store_host_hello_project(root, 2, "hot", policy, "push") as project:
        project.put(V1)
        yield project


def test_a_package_on_the_store_host_is_pushed_and_upgrades_the_nodes_hot(
    hot_store_host: StoreHostProject,
) -> None:
    project, fleet = hot_store_host, hot_store_host.fleet
    deployed = report(project.deploy("hot", V1))
    assert deployed["routes"] == dict.fromkeys(
        fleet.names, "full release: no VM answers on the node"
    )
    assert set(ask(fleet, "IO.puts(Hello.version())").values()) == {V1}

    project.put(V2, "v2")
    built = report(
        project.edeliver("build", "upgrade", "--from", V1, "--to", V2, "-e", "hot", "--json")
    )
    package_key = f"hello/{V2}/upgrades/{V1}/hello-{V2}.tar.gz"
    package = f"{STORE_PATH}/{package_key}"
    assert (built["from"], built["to"], built["location"]) == (V1, V2, package)
    stored = project.store_fleet.nodes[0].root / f"hello/{V2}/upgrades/{V1}"
    assert sorted(p.name for p in stored.iterdir()) == [f"hello-{V2}.tar.gz", "manifest.json"]
    listed = project.edeliver("releases", "--json")
    releases = json.loads(listed.stdout)["releases"]
    assert [row["version"] for row in releases] == [V1, V2], listed.stderr

    project.upgrade_hot("hot", V1, V2)
    # Pushed: the deployer downloaded one verified copy of v1, of v2 (the package was built from
    # it) and of the package, and uploaded the package to every node beside the full releases.
    cached = sorted(p.as_posix().rsplit(f"{STORE_PATH}/", 1)[1] for p in project.cached())
    assert cached == [f"hello/{V1}/hello-{V1}.tar.gz", f"hello/{V2}/hello-{V2}.tar.gz", package_key]
    assert project.uploads(f"{V2}-from-{V1}") == dict.fromkeys(fleet.names, True)
