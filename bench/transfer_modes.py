"""Push versus pull: one real deploy of examples/hello to N local sshd nodes from an S3 store.

Starts moto's S3 server and a LocalFleet of N nodes, puts hello 0.1.0 into the store, then
deploys it (one_for_all + rollback) twice on the same fleet, wiping the nodes in between:
`push` (the deployer downloads the object once, verifies it and uploads it to every node over
SFTP) and `pull` (each node curls a presigned URL). Prints the wall time of each and the bytes
the deployer wrote to its SSH connections (counted at asyncio's socket transport, so scripts,
SFTP and SSH framing all count).

    .venv/bin/python bench/transfer_modes.py [--nodes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import tempfile
import time
from asyncio import selector_events
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.race import POLICY, stop_and_wipe, tree
from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.local.config_file import load_config
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.cli.composition import Runtime, release_store
from edeliver.cli.demo import prepare_project
from edeliver.core.domain.model import Artifact
from edeliver.core.usecases.rollout import deploy
from tests.support.hello_release import tarball
from tests.support.moto import CREDENTIALS, moto_server, s3_client

VERSION, ENV, BUCKET = "0.1.0", "bench", "bench-releases"


class SentBytes:
    """Counts what this process writes to asyncio socket transports (asyncssh's connections)."""

    def __init__(self) -> None:
        self.total = 0
        self._write = selector_events._SelectorSocketTransport.write

    def __enter__(self) -> SentBytes:
        counter, original = self, self._write

        def counting(transport: Any, data: Any) -> None:
            counter.total += len(data)
            original(transport, data)

        selector_events._SelectorSocketTransport.write = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        selector_events._SelectorSocketTransport.write = self._write  # type: ignore[method-assign]


def one_deploy(project: Path, mode: str) -> tuple[float, int, str]:
    """Wall seconds, bytes sent over SSH, and the outcome of one deploy in `mode`."""
    config_file = project / ".deliver/edeliver.toml"
    text = re.sub(r'(?m)^mode = "(push|pull)"$', f'mode = "{mode}"', config_file.read_text())
    config_file.write_text(text)
    shutil.rmtree(project / ".deliver/cache", ignore_errors=True)  # push downloads afresh
    runtime = Runtime(project=project)
    config, services = runtime.config, runtime.services(None)
    with SentBytes() as sent:
        started = time.perf_counter()
        deployment = asyncio.run(deploy(services, config, ENV, VERSION))
        wall = time.perf_counter() - started
    services.deployments.close()
    return wall, sent.total, deployment.outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    nodes = parser.parse_args().nodes
    release = tarball(VERSION)  # built (or found cached) before anything is timed
    load = os.getloadavg()[0]  # before our own nodes add to it: other jobs on this machine
    root = Path(tempfile.mkdtemp(prefix="edeliver-bench-transfer-"))
    fleet = LocalFleet(root / "fleet", nodes)
    rows = []
    with moto_server() as endpoint, mock.patch.dict(os.environ, CREDENTIALS):
        try:
            fleet.start()
            project = prepare_project(root, fleet, ENV, POLICY)
            with (project / ".deliver/edeliver.toml").open("a") as config:
                config.write(
                    f'\n[store]\nurl = "s3://{BUCKET}/hello"\nendpoint_url = "{endpoint}"\n'
                    '[transfer]\nmode = "push"\n'
                )
            s3_client(endpoint).create_bucket(Bucket=BUCKET)
            artifact = Artifact("hello", VERSION, "", 0, platform=local_platform())
            asyncio.run(release_store(project, load_config(project)).put(release, artifact))
            for mode in ("push", "pull"):
                rows.append((mode, *one_deploy(project, mode)))
                stop_and_wipe(fleet)
        finally:
            fleet.stop()
            shutil.rmtree(root, ignore_errors=True)
    size = release.stat().st_size
    print(
        f"# {nodes} nodes, hello {VERSION} ({size / 1e6:.1f} MB), moto S3 on loopback, tree {tree()}"
    )
    print(f"# {os.cpu_count()} cores shared with the nodes' BEAMs; 1-min load before: {load:.1f}")
    print(f"{'mode':<5} {'wall s':>7} {'MB sent over SSH':>17} {'x release':>10}  outcome")
    for mode, wall, sent, outcome in rows:
        print(f"{mode:<5} {wall:>7.2f} {sent / 1e6:>17.2f} {sent / size:>10.2f}  {outcome}")


if __name__ == "__main__":
    main()
