"""Asking real nodes what they run, with plain OpenSSH: independent of the code under test."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet


def ssh(
    fleet: LocalFleet, node: FleetNode, command: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run `command` on the node with OpenSSH's own client, host key checked."""
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(fleet.client_key),
            "-o",
            f"UserKnownHostsFile={fleet.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-p",
            str(node.port),
            f"{node.user}@{node.host}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def running_version(fleet: LocalFleet, node: FleetNode) -> str | None:
    """The version the node's BEAM answers with, or None when no hello VM answers."""
    answer = ssh(
        fleet,
        node,
        f"cd {node.path}/current 2>/dev/null && bin/hello rpc 'IO.puts(Hello.version())'",
    )
    if answer.returncode != 0:
        return None
    return answer.stdout.strip() or None


def running_versions(fleet: LocalFleet) -> dict[str, str | None]:
    """Every node's answer, asked in parallel."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = pool.map(lambda n: (n.name, running_version(fleet, n)), fleet.nodes)
        return dict(answers)


def ask(fleet: LocalFleet, elixir: str) -> dict[str, str]:
    """Each node's answer to `elixir`, evaluated in its running VM (`bin/hello rpc`)."""
    answers = {}
    for node in fleet.nodes:
        command = f"cd {node.path}/current && bin/hello rpc {quoted(elixir)}"
        said = ssh(fleet, node, command, timeout=60)
        assert said.returncode == 0, said.stderr
        answers[node.name] = said.stdout.strip()
    return answers


def quoted(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The json report an `edeliver ... --json` command printed last."""
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))
