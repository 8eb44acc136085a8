"""Which connection errors a rollback waits out (a node rebooting, sshd restarting) and which
end it at once (a refused login, a refused session): the classification, as a table, and the
waiting itself."""

from __future__ import annotations

import asyncssh
import pytest

from edeliver.adapters.node import ssh_errors
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import NodeUnreachable
from edeliver.core.usecases.orchestrator import until_reachable

NODE = NodeConfig(name="node1", host="10.0.0.1", path="/srv/app")


@pytest.mark.parametrize(
    ("cause", "waited_out"),
    [
        (ConnectionRefusedError(111, "Connection refused"), True),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (TimeoutError(), True),
        (OSError(113, "No route to host"), True),
        (asyncssh.ConnectionLost("Connection lost"), True),
        (asyncssh.PermissionDenied("Permission denied"), False),
        (asyncssh.ChannelOpenError(1, "administratively prohibited"), False),
    ],
    ids=["refused", "reset", "timeout", "no route", "lost", "login refused", "session"],
)
def test_a_rollback_reconnects_while_the_node_cannot_be_reached_and_only_then(
    cause: BaseException, waited_out: bool
) -> None:
    """Only an unreachable node or a dropped connection is marked passing: waited out until the
    step's timeout; a refused login or session ends the rollback at once."""
    error = ssh_errors.ssh_error(NODE, cause, "connecting")
    assert isinstance(error, NodeUnreachable) and error.passing is waited_out


async def test_a_rollback_attempt_is_run_again_while_the_node_is_passing_unreachable() -> None:
    """Errors a reboot gives are waited out (each kept for the reason); the attempt then ends."""
    unreachable: list[NodeUnreachable] = []
    tries: list[int] = []

    async def attempt() -> None:
        tries.append(len(tries))
        if len(tries) < 3:
            raise NodeUnreachable(f"node1: cannot connect ({len(tries)})", passing=True)

    await until_reachable(attempt, unreachable)
    assert tries == [0, 1, 2]
    assert [str(e) for e in unreachable] == [
        "node1: cannot connect (1)",
        "node1: cannot connect (2)",
    ]


async def test_a_rollback_attempt_meeting_a_refused_login_ends_at_once() -> None:
    """An unreachable node that waiting cannot bring back (a refused login) is not retried."""
    unreachable: list[NodeUnreachable] = []

    async def attempt() -> None:
        raise NodeUnreachable("node1: authentication as deploy failed")

    with pytest.raises(NodeUnreachable, match="authentication"):
        await until_reachable(attempt, unreachable)
    assert unreachable == []
