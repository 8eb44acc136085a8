"""Output kept of local and remote commands is bounded while it is read, not after."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest

from edeliver.adapters.local.bounded_output import LIMIT, run_local
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.node_scripts import REMOTE_SH
from edeliver.adapters.node.ssh import AsyncsshNodeShells
from edeliver.adapters.node.ssh_output import run_bounded
from edeliver.core.domain.config import NodeConfig

PRINTED = 32 * 2**20  # what the command prints on each stream
MOST_HELD = 8 * 2**20  # what reading it may hold at its peak: a few blocks and SSH windows
PRINT_BOTH = (
    f"head -c {PRINTED} /dev/zero | tr '\\0' o; head -c {PRINTED} /dev/zero | tr '\\0' e >&2"
)


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path_factory.mktemp("fleet"), 1) as fleet:
        yield fleet


def _kept(text: str) -> int:
    """The bytes of output kept, the line saying what was dropped aside."""
    note, _, kept = text.partition("\n")
    assert note == f"[{PRINTED - LIMIT} earlier bytes of output dropped]"
    return len(kept)


def test_a_local_command_printing_many_mebibytes_keeps_only_the_bound() -> None:
    """32 MiB on stdout and on stderr: each keeps its last 64 KiB, and reading never held more
    than a few MiB."""
    tracemalloc.start()
    try:
        done = run_local(["sh", "-c", PRINT_BOTH])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done.returncode == 0
    assert _kept(done.stdout) == LIMIT and set(done.stdout.splitlines()[1]) == {"o"}
    assert _kept(done.stderr) == LIMIT and set(done.stderr.splitlines()[1]) == {"e"}
    assert peak < MOST_HELD


async def test_a_remote_command_printing_many_mebibytes_keeps_only_the_bound(
    one_node: LocalFleet,
) -> None:
    """The same over SSH, as stores, build hosts and nodes run their scripts."""
    node = one_node.nodes[0]
    config = NodeConfig(
        name=node.name, host=node.host, path=node.path, port=node.port,
        user=node.user, identity_file=str(one_node.client_key),
    )  # fmt: skip
    conn = await AsyncsshNodeShells(known_hosts=str(one_node.known_hosts)).connect(config)
    tracemalloc.start()
    try:
        done = await run_bounded(conn, REMOTE_SH, PRINT_BOTH + "\nexit 3\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        conn.close()
    assert done.exit_status == 3
    assert _kept(str(done.stdout)) == LIMIT and _kept(str(done.stderr)) == LIMIT
    assert peak < MOST_HELD
