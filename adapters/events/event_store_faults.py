"""Faults of the event store for tests: a deployer that dies after the K-th stored event (as a
SIGKILL would), a store that fails some writes. Each wraps a `save` (what the journal calls)."""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import Any


class SimulatedCrash(BaseException):
    """The deployer died: nothing after this point runs, nothing is recorded."""


class CrashingSave:
    """Stores events like `save`, but the deployer "dies" once `after` events are stored."""

    def __init__(self, save: Callable[..., object], after: int) -> None:
        self._save, self.remaining = save, after

    def __call__(self, events: Sequence[Any]) -> None:
        kept = list(events[: max(self.remaining, 0)])
        if kept:
            self._save(*kept)
        self.remaining -= len(events)
        if self.remaining < 0:
            raise SimulatedCrash(f"deployer killed with {len(events) - len(kept)} events unsaved")


class FlakySave:
    """Stores events like `save`, except that the writes numbered in `failing` (the first is 1)
    raise `error()` and store nothing: an event store that fails once, for a while or for good."""

    def __init__(
        self, save: Callable[..., object], failing: Container[int], error: Callable[[], Exception]
    ) -> None:
        self._save, self.failing, self.error = save, failing, error
        self.writes = 0

    def __call__(self, events: Sequence[Any]) -> None:
        self.writes += 1
        if self.writes in self.failing:
            raise self.error()
        self._save(events)


class FailingAt:
    """Stores events like `save`, except the write that would store the `at`-th event (the first
    is 1) raises `error()` once and stores nothing. Counted in events, not writes, so where it
    fails does not depend on how the journal happened to group events into writes."""

    def __init__(
        self, save: Callable[..., object], at: int, error: Callable[[], Exception]
    ) -> None:
        self._save, self.at, self.error = save, at, error
        self.stored, self.armed = 0, True

    def __call__(self, events: Sequence[Any]) -> None:
        if self.armed and self.stored < self.at <= self.stored + len(events):
            self.armed = False
            raise self.error()
        self._save(events)
        self.stored += len(events)
