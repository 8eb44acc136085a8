"""The hello project with a remote store (S3 or a store host), for the e2e store tests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edeliver.adapters.local_fleet import LocalFleet
from edeliver.cli.demo import prepare_project
from tests.e2e.conftest import Project
from tests.support.moto import CREDENTIALS, moto_server, s3_client


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
