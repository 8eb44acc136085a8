"""Which connection errors a rollback waits out (a node rebooting, sshd restarting) and which
end it at once (a refused login, a refused session): the classification, as a table."""

from __future__ import annotations

import asyncssh
import pytest

from edeliver.adapters import ssh
from edeliver.core.errors import NodeUnreachable


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
        (None, False),
    ],
    ids=["refused", "reset", "timeout", "no route", "lost", "login refused", "session", "none"],
)
def test_a_rollback_reconnects_while_the_node_cannot_be_reached_and_only_then(
    cause: BaseException | None, waited_out: bool
) -> None:
    """Only an unreachable node or a dropped connection is retried until the step's timeout."""
    error = NodeUnreachable("node1 (10.0.0.1:22): cannot connect")
    error.__cause__ = cause
    assert ssh._connection_failed(error) is waited_out
