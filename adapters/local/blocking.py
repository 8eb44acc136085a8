"""Synchronous ports (builders, stores) that do their work with asyncio inside.

`asyncio.run` refuses to start inside a running event loop, so a synchronous port called
from async code (a test, a task, a future async CLI) would fail before doing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end and return its result, whether or not a loop runs here.

    Inside a running loop the coroutine gets a loop of its own on a worker thread; the caller
    blocks either way, which is what a synchronous port promises.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="blocking-port") as worker:
        return worker.submit(asyncio.run, coroutine).result()
