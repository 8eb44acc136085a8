"""The tail kept of a remote command's output: its last bytes, however it was cut in blocks."""

from __future__ import annotations

import pytest

from edeliver.adapters.ssh_output import Tail


@pytest.mark.parametrize("block", [1, 3, 7, 10, 64])
def test_a_tail_keeps_the_last_bytes_whatever_the_blocks(block: int) -> None:
    """Written in blocks of any size, the tail is the stream's last `limit` bytes."""
    stream = bytes(range(48, 48 + 40)) * 3
    tail = Tail(limit=10)
    for start in range(0, len(stream), block):
        tail.write(stream[start : start + block])
    assert tail.text() == f"[{len(stream) - 10} earlier bytes of output dropped]\n" + (
        stream[-10:].decode()
    )


def test_a_short_output_is_kept_whole_without_a_note() -> None:
    """Below the limit nothing is dropped and nothing is added."""
    tail = Tail(limit=10)
    tail.write(b"abc")
    tail.write(b"def")
    assert tail.text() == "abcdef"
