"""known_hosts lines as OpenSSH writes and reads them: `host` on port 22, `[host]:port` else."""

from __future__ import annotations

import subprocess
from pathlib import Path

import asyncssh
import pytest

from edeliver.adapters.node.ssh_host_keys import KnownHosts, known_hosts_line, pin_host_key


@pytest.mark.parametrize(
    ("port", "pattern", "lookup"),
    [
        (22, "store.example", "store.example"),
        (2222, "[store.example]:2222", "[store.example]:2222"),
    ],
)
def test_a_pinned_line_is_found_by_openssh_and_by_our_matching(
    tmp_path: Path, port: int, pattern: str, lookup: str
) -> None:
    """OpenSSH's own `ssh-keygen -F` finds the line Edeliver pins, and so do we."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    line = known_hosts_line("store.example", port, key)
    assert line.split()[0] == pattern
    known = tmp_path / "known_hosts"
    pin_host_key(known, line)
    found = subprocess.run(
        ["ssh-keygen", "-F", lookup, "-f", str(known)], capture_output=True, text=True, check=False
    )
    assert found.returncode == 0 and pattern in found.stdout
    trusted = KnownHosts([str(known)]).match("store.example", "", port)[0]
    assert [k.public_data for k in trusted] == [key.public_data]
