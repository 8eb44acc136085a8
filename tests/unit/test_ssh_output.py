"""The tail kept of a remote command's output: its last bytes, however it was cut in blocks."""

from __future__ import annotations

import pytest

from edeliver.adapters.local.bounded_output import LIMIT, Tail, drain, was_cut


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


class _Printer:
    """A stream that yields `total` bytes in blocks, like a command printing without end."""

    def __init__(self, total: int, block: int = 50_000) -> None:
        self.left, self.block = total, block

    async def read(self, n: int = -1) -> bytes:
        size = min(self.left, self.block, n if n > 0 else self.block)
        self.left -= size
        return b"x" * size


async def test_a_stream_of_many_mebibytes_is_kept_to_the_bound_while_it_is_read() -> None:
    """Draining 64 MiB, the tail never holds more than its limit, and says what it dropped."""
    tail = Tail(limit=LIMIT)
    held: list[int] = []
    original = tail.write

    def write(block: bytes) -> None:
        original(block)
        held.append(tail.kept)

    tail.write = write  # type: ignore[method-assign]
    await drain(_Printer(64 * 2**20), tail)
    assert max(held) <= LIMIT and tail.kept == LIMIT
    assert tail.text().startswith(f"[{64 * 2**20 - LIMIT} earlier bytes of output dropped]\n")


def test_a_tail_that_dropped_its_beginning_says_so_and_nothing_else_does() -> None:
    """`was_cut` tells a kept tail from whole output, even output whose first line looks alike."""
    tail = Tail(limit=10)
    tail.write(b"drwxr-xr-x 0/0 0 2026-01-01 00:00 lib/\n" * 3)
    assert was_cut(tail.text())
    whole = Tail(limit=10_000)
    whole.write(b"[not a note]\n-rw-r--r-- 0/0 1 2026-01-01 00:00 bin/x\n")
    assert not was_cut(whole.text())
    assert not was_cut("[12 earlier bytes of output dropped] but said by the script\n")
