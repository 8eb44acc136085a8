"""The journal: stores a deployment's new events in order, never leaving a hole (DESIGN §5).

Group commit: nodes that change state at the same moment share one transaction, and each waits
until its own events are stored before it acts ("event first, then act").

A batch that fails to store stays at the head of the buffer, so nothing written later can land
before it: the stored versions of a deployment never have a hole. Transient failures (a locked
or full SQLite file, a lost PostgreSQL connection) are retried with backoff for a bounded time;
after that, or on any other error, the journal is *failed*: every later commit raises the same
error at once, so no node starts anything further, and the events it still holds are tried once
more by `store_rest` when the deployment stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.errors import EventStoreError, one_line

SaveEvents = Callable[[Sequence[Any]], object]
Listener = Callable[[Deployment, Sequence[Any]], None]
T = TypeVar("T")
Warn = Callable[[str], None]  # says something to the person deploying, on the side


@dataclass(frozen=True)
class Patience:
    """How long the journal keeps trying a store that fails transiently: waits double from
    `first` to at most `longest` seconds between tries, for `total` seconds in all."""

    total: float = 60.0
    first: float = 0.2
    longest: float = 5.0


class Journal:
    """Stores a deployment's new events, many nodes' changes in one transaction."""

    def __init__(
        self,
        deployment: Deployment,
        save: SaveEvents,
        listener: Listener | None,
        *,
        store: str = "of this project",
        patience: Patience | None = None,
        warn: Warn | None = None,
    ) -> None:
        self.deployment, self._save, self._listener = deployment, save, listener
        self.store, self.patience, self._warn = store, patience or Patience(), warn
        self.failure: EventStoreError | None = None  # set once the store failed for good
        self._pending: list[Any] = []  # collected and not stored yet, oldest first
        self._collected = self._stored = 0
        self._mutex = threading.Lock()  # `_pending` is trimmed by the writer thread
        self._lock = asyncio.Lock()
        # eventsourcing is synchronous: one writer thread keeps the loop free and the DB serial.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edeliver-journal")

    async def commit(self) -> None:
        """Return once every event recorded so far is stored; raise the store's failure if it
        failed for good (now or earlier), so that the caller starts nothing further."""
        self._collect()
        target = self._collected
        async with self._lock:
            if self.failure is not None:
                raise self.failure
            if self._stored >= target:
                return  # a commit that ran while we waited stored ours too
            batch = await self._store_with_retries()
        if self._listener and batch:
            with contextlib.suppress(Exception):  # showing progress must never stop a rollout
                self._listener(self.deployment, batch)

    async def store_rest(self) -> None:
        """One last try to store every event not stored yet (the deployment's interruption
        among them), once the rollout stopped; raises the store's error if it fails."""
        self._collect()
        batch = self._head()
        if batch:
            await asyncio.to_thread(self._write_in_thread, batch)

    def close(self) -> None:
        """Stop the writer once a write in progress has finished."""
        self._writer.shutdown(wait=True)

    async def _store_with_retries(self) -> list[Any]:
        """Store the head of the buffer, trying again while the failure is transient."""
        try:
            return await patiently(self._write_head, self.patience, self.store, self._warn)
        except Exception as error:  # the store's, or a bug of the save function
            raise self._failed(error) from error

    async def _write_head(self) -> list[Any]:
        batch = self._head()
        await self._write(batch)
        return batch

    async def _write(self, batch: list[Any]) -> None:
        writing = asyncio.get_running_loop().run_in_executor(
            self._writer, self._write_in_thread, batch
        )
        # If our wait is cut short, the write still ends in its thread: its error is then
        # looked at here, so that asyncio never reports "Future exception was never retrieved".
        writing.add_done_callback(_look_at_error)
        # Shielded: cancelling the wait must not cancel a write already handed to the thread.
        await asyncio.shield(writing)

    def _write_in_thread(self, batch: list[Any]) -> None:
        self._save(batch)
        with self._mutex:  # stored: only now does the batch leave the head of the buffer
            del self._pending[: len(batch)]
            self._stored += len(batch)

    def _collect(self) -> None:
        new = self.deployment.collect_events()
        with self._mutex:
            self._pending += new
            self._collected += len(new)

    def _head(self) -> list[Any]:
        with self._mutex:
            return list(self._pending)

    def _failed(self, error: BaseException) -> EventStoreError:
        if isinstance(error, EventStoreError):
            self.failure = error  # already names the store (see `Deployments.save`)
        else:
            self.failure = EventStoreError(f"event store {self.store}: {one_line(error)}")
        return self.failure


async def patiently(
    attempt: Callable[[], Awaitable[T]], patience: Patience, store: str, warn: Warn | None
) -> T:
    """Await `attempt()` until it works, trying again after transient store errors (saying so
    once) for up to `patience.total` seconds; any other error is raised at once."""
    delay, last = patience.first, None
    try:
        async with asyncio.timeout(patience.total):
            while True:
                try:
                    return await attempt()
                except EventStoreError as error:
                    if not error.transient:
                        raise
                    if last is None and warn:
                        warn(f"{error}; trying again for up to {patience.total:g}s")
                    last = error
                await asyncio.sleep(delay)
                delay = min(2 * delay, patience.longest)
    except TimeoutError:
        raise _gave_up(store, patience, last) from last


def _gave_up(store: str, patience: Patience, last: EventStoreError | None) -> EventStoreError:
    total = f"{patience.total:g}s"
    if last is None:  # the first attempt neither ended nor failed in time
        return EventStoreError(f"event store {store}: no answer within {total}")
    return EventStoreError(f"{last} (still after retrying for {total})")


def _look_at_error(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
