"""A new user's first hour: `mix new`, `edeliver init`, build, deploy, on real sshd nodes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edeliver.adapters.node.local_fleet import LocalFleet
from tests.support.nodes import ssh

APP = "ledger"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with LocalFleet(
        tmp_path_factory.mktemp("fleet"), 2, deploy_path=f"/srv/{APP}", name_prefix="web"
    ) as started:
        yield started


@pytest.fixture
def home(tmp_path: Path, fleet: LocalFleet) -> Path:
    """A user whose ssh key is the usual ~/.ssh/id_ed25519 and who trusts no node yet."""
    ssh_dir = tmp_path / "home" / ".ssh"
    ssh_dir.mkdir(parents=True, mode=0o700)
    shutil.copyfile(fleet.client_key, ssh_dir / "id_ed25519")
    (ssh_dir / "id_ed25519").chmod(0o600)
    return ssh_dir.parent


def run(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EDELIVER_EVENTS", "SSH_AUTH_SOCK")}
    return subprocess.run(
        args,
        cwd=cwd,
        env={**env, "HOME": str(home), "MIX_HOME": str(home / ".mix"), "HEX_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_a_fresh_mix_project_reaches_real_nodes_in_four_commands(
    tmp_path: Path, fleet: LocalFleet, home: Path
) -> None:
    """mix new, edeliver init (pinning keys), build, deploy: every node runs the app's version."""
    edeliver = [sys.executable, "-m", "edeliver.cli"]
    nodes = [f"--node={n.name}={n.user}@{n.host}:{n.port}:{n.path}" for n in fleet.nodes]
    commands = [
        ["mix", "new", APP],
        [*edeliver, "-C", APP, "init", *nodes, "--trust"],
        [*edeliver, "-C", APP, "build"],
        [*edeliver, "-C", APP, "deploy", "production"],
    ]
    for command in commands:
        result = run(command, tmp_path, home)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"

    for node in fleet.nodes:
        answer = ssh(
            fleet,
            node,
            f"cd {node.path}/current && bin/{APP} rpc 'IO.puts(Application.spec(:{APP}, :vsn))'",
        )
        assert answer.stdout.strip() == "0.1.0", answer.stderr
    pinned = (home / ".ssh" / "known_hosts").read_text()
    assert all(node.host_public_key.split()[1] in pinned for node in fleet.nodes)
