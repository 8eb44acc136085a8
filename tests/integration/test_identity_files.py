"""A node's identity_file that cannot be used is one line naming the node and the file, on a
real sshd node: missing, passphrase-protected or not a key; a good one connects."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.ssh import AsyncsshNodeShells
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import UsageError


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path_factory.mktemp("identity") / "fleet", 1) as nodes:
        yield nodes


def _node(fleet: LocalFleet, key: Path) -> NodeConfig:
    one: FleetNode = fleet.nodes[0]
    return NodeConfig("web1", one.host, one.path, one.port, one.user, identity_file=str(key))


def _connect(fleet: LocalFleet, key: Path) -> str:
    """Connect with `key`, run `whoami`, return its output."""

    async def attempt() -> str:
        shells = AsyncsshNodeShells(known_hosts=str(fleet.known_hosts), ssh_config=[])
        shell = await shells.open(_node(fleet, key))
        try:
            return (await shell.run_command("whoami", {})).output.strip()
        finally:
            await shell.close()

    return asyncio.run(attempt())


def _encrypted_copy(key: Path, into: Path) -> Path:
    """The fleet's client key, protected by a passphrase with ssh-keygen."""
    copy = into / "protected_key"
    shutil.copy(key, copy)
    copy.chmod(0o600)
    subprocess.run(
        ["ssh-keygen", "-p", "-q", "-P", "", "-N", "s3cret", "-f", str(copy)], check=True
    )
    return copy


def test_the_fleet_key_as_identity_file_connects(fleet: LocalFleet) -> None:
    """The control: a readable key without passphrase is loaded and logs in."""
    assert _connect(fleet, fleet.client_key) == fleet.nodes[0].user


def test_a_missing_identity_file_names_the_node_and_the_file(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    """A key path that does not exist: one line, node and path, exit 2 (UsageError)."""
    missing = tmp_path / "no_such_key"
    with pytest.raises(UsageError) as raised:
        _connect(fleet, missing)
    assert str(raised.value) == f"web1: identity_file {missing}: no such file"
    assert raised.value.exit_code == 2


def test_a_passphrase_protected_identity_file_says_so(fleet: LocalFleet, tmp_path: Path) -> None:
    """An encrypted key: one line naming it and what to do, the passphrase asked of no one."""
    protected = _encrypted_copy(fleet.client_key, tmp_path)
    with pytest.raises(UsageError) as raised:
        _connect(fleet, protected)
    message = str(raised.value)
    assert message.startswith(f"web1: identity_file {protected}: the key is passphrase-protected")
    assert "ssh-agent" in message and "\n" not in message


def test_a_file_that_is_no_key_says_so(fleet: LocalFleet, tmp_path: Path) -> None:
    """A malformed key file: one line naming it, not a traceback."""
    garbage = tmp_path / "id_broken"
    garbage.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot base64 at all\n")
    garbage.chmod(0o600)
    with pytest.raises(UsageError) as raised:
        _connect(fleet, garbage)
    assert str(raised.value).startswith(f"web1: identity_file {garbage}: not a private key (")
    assert "\n" not in str(raised.value)
