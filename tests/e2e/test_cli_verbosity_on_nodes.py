"""`edeliver -vv` as a real process against real sshd nodes: every step with its timing, every
script sent, and no secret in what it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.cli.demo import prepare_project
from tests.support.faults_tasks import write_tasks
from tests.support.hello_release import put_in_local_store
from tests.support.nodes import running_versions

VERSION = "0.1.0"
TOKEN = "tok-e2e-0123456789"  # the value of a secret-looking variable of the deployer
URL_PASSWORD = "pw-in-a-url"
TASK = (
    "#!/bin/sh\n# stage: post_extract_release_archive\n"
    f': "token {TOKEN} and postgresql://app:{URL_PASSWORD}@db/ledger"\n'
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, LocalFleet]]:
    """Two real nodes, hello 0.1.0 in the local store, a node task whose text holds secrets."""
    root = tmp_path_factory.mktemp("e2e-verbosity")
    fleet = LocalFleet(root / "fleet", 2, name_prefix="web")
    fleet.start()
    try:
        directory = prepare_project(root, fleet, "prod", "max_parallel = 2")
        put_in_local_store(directory, [(VERSION, "good")])
        write_tasks(directory, {"10_note.sh": TASK})
        yield directory, fleet
    finally:
        fleet.stop()


def test_minus_vv_deploy_shows_steps_timed_and_scripts_masked(
    project: tuple[Path, LocalFleet],
) -> None:
    """A real `deploy -vv`: each node's steps with timings, the scripts sent to each node,
    the secrets in them masked, and the nodes end on the release."""
    directory, fleet = project
    env = {k: v for k, v in os.environ.items() if k != "EDELIVER_EVENTS"}
    done = subprocess.run(
        [sys.executable, "-m", "edeliver.cli", "deploy", "prod", "-vv", "--version", VERSION],
        capture_output=True, text=True, timeout=600, check=False, cwd=directory,
        env={**env, "DEPLOY_TOKEN": TOKEN},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for node in fleet.names:
        assert re.search(
            rf"^{node}: activating -activated-> verifying \(activating took ",
            done.stderr,
            re.MULTILINE,
        )
        assert f"{node}: sends a script:" in done.stderr
        assert f"  {node} | " in done.stderr
    assert "postgresql://app:[redacted]@db/ledger" in done.stderr
    assert "token [redacted]" in done.stderr
    assert TOKEN not in done.stdout + done.stderr and URL_PASSWORD not in done.stderr
    assert set(running_versions(fleet).values()) == {VERSION}
    log = subprocess.run(
        [sys.executable, "-m", "edeliver.cli", "-C", str(directory), "log"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert log.returncode == 0 and "Finished" in log.stdout, log.stderr
