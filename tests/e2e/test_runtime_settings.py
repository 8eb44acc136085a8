"""examples/ledger deployed to 3 real nodes with runtime settings from edeliver.toml: a secret
from the deployer's environment, a secret kept in a file on each node, a per-node greeting and
node name, one cookie per environment. The nodes' running VMs are asked what they got; the event
log and the events database are searched for the secrets; a missing secret is refused before
any node changes."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.cli.composition import Runtime
from edeliver.cli.rollout_commands import build_into_store
from tests.e2e.conftest import EDELIVER
from tests.support.ledger_project import bare_tally, ledger_copy, ledger_env
from tests.support.nodes import quoted, ssh

OLD, NEW = "1.0.0", "1.1.0"
SECRET = f"ledger-secret-{secrets.token_hex(12)}"
ASK = (
    "for {k, v} <- Map.put(Ledger.settings(), :vsn, Application.spec(:ledger, :vsn)), "
    'do: IO.puts("#{k}=#{v}")'
)


def node_name(node: FleetNode) -> str:
    return f"ledger_{node.name}@127.0.0.1"


def api_key(node: FleetNode) -> str:
    return f"api-key-of-{node.name}"


def _config(fleet: LocalFleet) -> str:
    nodes = "".join(
        fleet.toml_node(node) + f'node_name = "{node_name(node)}"\n'
        f'env = {{ LEDGER_GREETING = "hello from {node.name}" }}\n\n'
        for node in fleet.nodes
    )
    names = ", ".join(f'"{n}"' for n in fleet.names)
    return (
        f'app = "ledger"\nknown_hosts = "{fleet.known_hosts}"\n[build]\nrelease = "ledger"\n\n'
        f"{nodes}[environments.prod]\nnodes = [{names}]\n[environments.prod.env]\n"
        'LEDGER_SECRET = { from_env = "LEDGER_PROD_SECRET" }\n'
        'LEDGER_API_KEY = { from_file = "ledger_api_key" }\n'
    )


# Tasks that print what they see of the settings: a shell task on each node, and an Elixir one
# evaluated by the release (`bin/ledger eval`).
TASKS = {
    "10_show.sh": "#!/bin/sh\n# stage: post_start_deployed_release\n"
    'echo "shell: $LEDGER_GREETING / $LEDGER_SECRET / $LEDGER_API_KEY"\n',
    "20_show.exs": "# stage: post_start_deployed_release\n"
    'IO.puts("elixir: #{System.get_env("LEDGER_GREETING")} / '
    '#{System.get_env("LEDGER_SECRET")} / #{System.get_env("LEDGER_API_KEY")}")\n',
}


def _put_tasks(directory: Path) -> None:
    tasks = directory / ".deliver/tasks"
    tasks.mkdir(parents=True)
    for name, text in TASKS.items():
        (tasks / name).write_text(text)


@dataclass
class Ledger:
    directory: Path
    fleet: LocalFleet

    def edeliver(self, *args: str, secret: str | None = SECRET) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("EDELIVER_EVENTS",)}
        env.pop("LEDGER_PROD_SECRET", None)
        if secret is not None:
            env["LEDGER_PROD_SECRET"] = secret
        return subprocess.run(
            [*EDELIVER, "-C", str(self.directory), *args],
            capture_output=True, text=True, timeout=600, check=False, env=env,
        )  # fmt: skip

    def ask(self) -> dict[str, dict[str, str]]:
        """Each node's running VM, reached as an operator does: the env file sourced first."""
        answers = {}
        for node in self.fleet.nodes:
            command = (
                f"cd {node.path}/current && . {node.path}/shared/.edeliver/env && "
                f"bin/ledger rpc {quoted(ASK)}"
            )
            said = ssh(self.fleet, node, command, timeout=60)
            assert said.returncode == 0, said.stdout + said.stderr
            answers[node.name] = dict(line.partition("=")[::2] for line in said.stdout.splitlines())
        return answers


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """3 nodes, each with its API key in shared/; ledger 1.0.0 and 1.1.0 built in the store."""
    root = tmp_path_factory.mktemp("settings")
    with LocalFleet(root / "fleet", 3) as fleet:
        directory = ledger_copy(root, _config(fleet))
        _put_tasks(directory)
        tally = bare_tally(root)
        for version in (OLD, NEW):
            build_into_store(Runtime(project=directory), env=ledger_env(version, str(tally)))
        for node in fleet.nodes:  # as an operator puts it there, as the node's user
            shared = f"{node.path}/shared"
            put = f"mkdir -p {shared} && echo {api_key(node)} >{shared}/ledger_api_key"
            assert ssh(fleet, node, put).returncode == 0
        yield Ledger(directory, fleet)


@pytest.fixture(scope="module")
def deployed(ledger: Ledger) -> subprocess.CompletedProcess[str]:
    return ledger.edeliver("deploy", "prod", "--version", OLD, "--json")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_each_node_runs_with_its_own_settings_and_the_environment_s_secrets(
    ledger: Ledger, deployed: subprocess.CompletedProcess[str]
) -> None:
    """Asked in its VM: its node name, its greeting, the deployer's secret, its file's key."""
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    for name, said in ledger.ask().items():
        node = ledger.fleet.node(name)
        assert said["vsn"] == OLD
        assert said["node"] == node_name(node)
        assert said["greeting"] == f"hello from {name}"
        assert said["secret_sha256"] == _sha256(SECRET)
        assert said["api_key_sha256"] == _sha256(api_key(node))


def test_the_env_file_and_the_cookie_are_private_and_the_cookie_is_one_per_environment(
    ledger: Ledger, deployed: subprocess.CompletedProcess[str]
) -> None:
    """shared/.edeliver/env and cookie are 0600 in a 0700 dir; every node keeps the same cookie,
    which its releases' COOKIE files hold too."""
    assert deployed.returncode == 0, deployed.stderr
    cookies = set()
    for node in ledger.fleet.nodes:
        private = node.root / "shared/.edeliver"
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        for name in ("env", "cookie"):
            assert stat.S_IMODE((private / name).stat().st_mode) == 0o600, name
        cookies.add((private / "cookie").read_text().strip())
        release_cookie = node.root / f"releases/{OLD}/releases/COOKIE"
        assert release_cookie.read_text() == (private / "cookie").read_text()
        assert SECRET in (private / "env").read_text()
        assert api_key(node) not in (private / "env").read_text()  # read on the node, when sourced
    assert len(cookies) == 1 and len(cookies.pop()) == 64


def test_no_secret_and_no_cookie_is_in_the_event_log_or_the_events_database(
    ledger: Ledger, deployed: subprocess.CompletedProcess[str]
) -> None:
    """`edeliver log --json` and every byte of .deliver/events.db* hold none of them."""
    assert deployed.returncode == 0, deployed.stderr
    cookie = (ledger.fleet.nodes[0].root / "shared/.edeliver/cookie").read_text().strip()
    log = ledger.edeliver("log", "--json")
    assert log.returncode == 0, log.stderr
    events = [json.loads(line) for line in log.stdout.splitlines()]
    assert any(e["event"] == "Finished" for e in events)
    stored = b"".join(p.read_bytes() for p in ledger.directory.glob(".deliver/events.db*"))
    assert stored, "the events database exists"
    for secret in (SECRET, cookie, *(api_key(n) for n in ledger.fleet.nodes)):
        assert secret not in log.stdout and secret.encode() not in stored


def test_tasks_see_the_settings_and_their_output_keeps_no_secret(
    ledger: Ledger, deployed: subprocess.CompletedProcess[str]
) -> None:
    """Shell and Elixir tasks on each node read the same values; their recorded output shows
    the greeting and masks the deployer's secret and the node's file secret."""
    assert deployed.returncode == 0, deployed.stderr
    log = ledger.edeliver("log", "--json")
    outputs = {
        (e["node"], e["task"]): e["output"].strip()
        for e in map(json.loads, log.stdout.splitlines())
        if e["event"] == "TaskRan"
    }
    for name in ledger.fleet.names:
        for task, lang in (("10_show", "shell"), ("20_show", "elixir")):
            said = outputs[(name, task)]
            assert said == f"{lang}: hello from {name} / [redacted] / [redacted]", said


def test_a_secret_missing_from_the_deployer_s_environment_is_refused_before_any_node_changes(
    ledger: Ledger, deployed: subprocess.CompletedProcess[str]
) -> None:
    """Exit 2, one line naming the key and the variable; every node still runs 1.0.0."""
    assert deployed.returncode == 0, deployed.stderr
    history = ledger.edeliver("history", "--json").stdout
    refused = ledger.edeliver("deploy", "prod", "--version", NEW, secret=None)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"edeliver: {ledger.directory}/.deliver/edeliver.toml: "
        "environments.prod.env.LEDGER_SECRET: LEDGER_PROD_SECRET is not set in the deployer's "
        "environment; nothing was changed on any node"
    ]
    assert {said["vsn"] for said in ledger.ask().values()} == {OLD}
    assert ledger.edeliver("history", "--json").stdout == history
    for node in ledger.fleet.nodes:
        assert not (node.root / f"releases/{NEW}").exists()


def test_a_node_keeping_another_cookie_is_refused_by_name_and_its_cookie_spreads_nowhere(
    ledger: Ledger, deployed: subprocess.CompletedProcess[str]
) -> None:
    """One node's kept cookie changed by hand: the whole deploy is refused in one line naming
    that node and one it differs from (whichever answered first is the other), the cookie
    in no output; every node keeps its cookie and still runs 1.0.0."""
    assert deployed.returncode == 0, deployed.stderr
    kept = [node.root / "shared/.edeliver/cookie" for node in ledger.fleet.nodes]
    agreed, odd_file = kept[0].read_text(), kept[-1]
    odd = "0dd" * 20
    odd_file.write_text(odd + "\n")
    try:
        refused = ledger.edeliver("deploy", "prod", "--version", NEW)
        assert refused.returncode == 3, refused.stdout + refused.stderr  # refused (DESIGN §9)
        odd_name, others = ledger.fleet.names[-1], ledger.fleet.names[:-1]
        said = refused.stderr.strip().splitlines()
        assert len(said) == 1 and said[0].startswith("edeliver: ")
        assert " keep different Erlang cookies " in said[0]
        assert odd_name in said[0] and any(name in said[0] for name in others), said[0]
        assert odd not in refused.stdout + refused.stderr
        assert odd_file.read_text() == odd + "\n"
        assert [path.read_text() for path in kept[:-1]] == [agreed] * (len(kept) - 1)
        assert {said["vsn"] for said in ledger.ask().values()} == {OLD}
    finally:
        odd_file.write_text(agreed)
