"""Waiting for something to happen in a test: poll under a deadline, never a fixed sleep.

A fixed sleep is either too short on a loaded machine (a flaky failure) or longer than needed
(a slow suite); a poll returns as soon as the condition holds and fails naming what it waited
for. The deadline is generous: it only bounds how long a broken run hangs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll `check()` until it returns something true, and return that; fail naming `what`
    once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not (answer := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}")
        time.sleep(every)
    return answer


async def wait_for_async(
    check: Callable[[], Awaitable[T]], timeout: float, what: str, every: float = 0.1
) -> T:
    """`wait_for` for a check that must be awaited (asks a node over SSH, say)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (answer := await check()):
        if loop.time() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}")
        await asyncio.sleep(every)
    return answer


def process_ended(pid: int) -> bool:
    """Whether the process is gone or a zombie: either way it runs no more code."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # the state field follows "(comm)"
