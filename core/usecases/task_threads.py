"""Where Python task bodies run: threads of their own, never the program's shared ones."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable


class TaskThreads:
    """A thread per task body, at most `limit` awaited at once.

    Daemon threads, unlike a ThreadPoolExecutor's or asyncio's default executor's (both joined
    when the program ends): a body that never returns cannot keep the CLI from exiting once the
    deployment ended, nor take a thread the journal's writer or a store needs. A body cut short
    by its time limit keeps its thread until it returns (a thread cannot be stopped) but gives
    up its slot, so hung bodies never stall the other nodes.
    """

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(max(limit, 1))
        self._started = 0

    async def run(self, body: Callable[[], object]) -> None:
        """Run `body` in a thread of its own; return when it returns, raise what it raises."""
        async with self._slots:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            self._started += 1
            thread = threading.Thread(
                target=_run, args=(body, loop, done), name=f"edeliver-task-{self._started}"
            )
            thread.daemon = True
            thread.start()
            await done


def _run(
    body: Callable[[], object], loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]
) -> None:
    """In the task's thread: run the body, hand how it ended to the loop (if it still runs)."""
    error: BaseException | None = None
    try:
        body()
    except Exception as raised:
        error = raised
    except BaseException as raised:  # SystemExit in a task fails the task, not the deployer
        error = RuntimeError(f"{type(raised).__name__}: {raised}")
    with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, done, error)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # cut short: its waiter is gone
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
