"""The hello project with a remote store (S3 or a store host), for the e2e store tests."""

from __future__ import annotations

import asyncio
import os
import pwd
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.local.config_file import load_config
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.local_host import write_key_pair
from edeliver.cli.composition import release_store
from edeliver.cli.demo import prepare_project
from edeliver.core.domain.model import Artifact
from tests.e2e.conftest import Project
from tests.support.hello_release import Variant, tarball
from tests.support.moto import CREDENTIALS, moto_server, s3_client
from tests.support.nodes import ask, report

STORE_PATH = "/srv/edeliver-store"


class StoreProject(Project):
    """A Project whose transfer mode can be switched, with what the deployer cached."""

    def transfer(self, mode: str) -> None:
        config = self.directory / ".deliver/edeliver.toml"
        text = re.sub(r'(?m)^mode = "(push|pull)"$', f'mode = "{mode}"', config.read_text())
        config.write_text(text)

    def cached(self) -> list[Path]:
        """Tarballs the deployer downloaded from the store (a push does, a pull never)."""
        return list((self.directory / ".deliver/cache").rglob("*.tar.gz"))

    def uploads(self, version: str) -> dict[str, bool]:
        return {
            n.name: (n.root / ".edeliver/uploads" / f"hello-{version}.tar.gz").exists()
            for n in self.fleet.nodes
        }

    def push_runs_one_verified_copy(self, old: str, new: str) -> None:
        """From `old` everywhere, a push of `new`: one local copy, uploaded to every node."""
        self.ensure_all_on(old)
        self.transfer("push")
        try:
            result = self.deploy("all", new)
        finally:
            self.transfer("pull")
        assert result.returncode == 0, result.stdout + result.stderr
        assert self.running() == dict.fromkeys(self.fleet.names, new)
        assert [p.name for p in self.cached()] == [f"hello-{new}.tar.gz"]

    def upgrade_hot(self, environment: str, old: str, new: str) -> dict[str, Any]:
        """`edeliver upgrade ENVIRONMENT` from `old` everywhere, then ask the nodes: each BEAM
        kept its OS pid, release_handler has `new` permanent and `old` old, the code answers
        `new`. The command's json report."""
        fleet = self.fleet
        pids = ask(fleet, "IO.puts(System.pid())")
        upgraded = report(self.edeliver("upgrade", environment, "--json"))
        assert upgraded["routes"] == dict.fromkeys(fleet.names, f"hot upgrade from {old}")
        assert ask(fleet, "IO.puts(System.pid())") == pids  # the same BEAM, never restarted
        releases = ask(
            fleet,
            "IO.inspect(Enum.sort(for {_, v, _, s} <- :release_handler.which_releases(), "
            "do: {to_string(v), s}))",
        )
        assert set(releases.values()) == {f'[{{"{old}", :old}}, {{"{new}", :permanent}}]'}
        assert set(ask(fleet, "IO.puts(Hello.version())").values()) == {new}
        return upgraded


class S3Project(StoreProject):
    """The hello project with its store in S3; the deployer has AWS credentials in its env."""

    endpoint: str

    def edeliver(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def,override]
        return super().edeliver(*args, timeout=timeout, env={**CREDENTIALS, **(env or {})})


@contextmanager
def s3_hello_project(
    root: Path, nodes: int, environment: str, policy: str, bucket: str, prefix: str
) -> Iterator[S3Project]:
    """`nodes` real nodes, moto's S3 server with `bucket`, and the hello project keeping its
    releases in s3://bucket/prefix, the nodes pulling them; all stopped after."""
    fleet = LocalFleet(root / "fleet", nodes)
    with moto_server() as endpoint:
        s3_client(endpoint).create_bucket(Bucket=bucket)
        fleet.start()
        try:
            directory = prepare_project(root, fleet, environment, policy)
            with (directory / ".deliver/edeliver.toml").open("a") as config:
                config.write(
                    f'\n[store]\nurl = "s3://{bucket}/{prefix}"\nendpoint_url = "{endpoint}"\n'
                    '\n[transfer]\nmode = "pull"\n'
                )
            project = S3Project(directory, fleet)
            project.endpoint = endpoint
            yield project
        finally:
            fleet.stop()


class StoreHostProject(StoreProject):
    """The hello project with its store on a store host: one more real sshd node."""

    store_fleet: LocalFleet

    def stored(self) -> set[str]:
        root = self.store_fleet.nodes[0].root / "hello"
        return {p.parent.name for p in root.glob("*/manifest.json")}

    def put(self, version: str, variant: Variant = "good") -> None:
        """A build of examples/hello into the store, as `edeliver build` would put it."""
        store = release_store(self.directory, load_config(self.directory))
        built = Artifact("hello", version, "", 0, platform=local_platform())
        asyncio.run(store.put(tarball(version, variant), built))


@contextmanager
def store_host_hello_project(
    root: Path, nodes: int, environment: str, policy: str, transfer: str
) -> Iterator[StoreHostProject]:
    """`nodes` real nodes, a store-host node, and the hello project keeping its releases in
    user@storehost:STORE_PATH, moved in `transfer` mode (with pull, the nodes get a key the
    store host authorizes); all stopped after."""
    fleet = LocalFleet(root / "fleet", nodes)
    store_fleet = LocalFleet(root / "storehost", 1, deploy_path=STORE_PATH, name_prefix="store")
    try:
        fleet.start()
        store_fleet.start()
        store = store_fleet.nodes[0]
        with fleet.known_hosts.open("a") as known:
            known.write(store.known_hosts_line + "\n")
        directory = prepare_project(root, fleet, environment, policy)
        with (directory / ".deliver/edeliver.toml").open("a") as config:
            config.write(
                f'\n[store]\nurl = "{store.user}@{store.host}:{STORE_PATH}"\nport = {store.port}\n'
                f'identity_file = "{store_fleet.client_key}"\n\n[transfer]\nmode = "{transfer}"\n'
            )
            if transfer == "pull":
                _authorize_nodes_on(fleet, store_fleet, root / "node_key")
                config.write('node_identity_file = "~/.ssh/edeliver_store"\n')
        project = StoreHostProject(directory, fleet)
        project.store_fleet = store_fleet
        yield project
    finally:
        fleet.stop()
        store_fleet.stop()


def _authorize_nodes_on(fleet: LocalFleet, store_fleet: LocalFleet, key: Path) -> None:
    """One key for the nodes, in each node user's ~/.ssh, authorized on the store host."""
    public = write_key_pair(key, "edeliver nodes -> store host")
    store_home = store_fleet.nodes[0].home / ".ssh/authorized_keys"
    store_home.write_text(store_home.read_text() + public + "\n")
    for node in fleet.nodes:
        user = pwd.getpwnam(node.user)
        target = node.home / ".ssh/edeliver_store"
        target.write_bytes(key.read_bytes())
        os.chmod(target, 0o600)
        os.chown(target, user.pw_uid, user.pw_gid)
