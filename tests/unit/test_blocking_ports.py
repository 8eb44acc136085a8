"""Synchronous ports work whether or not an event loop runs in the calling thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from edeliver.adapters.local.blocking import run_blocking


async def _loop_thread() -> str:
    await asyncio.sleep(0)
    return threading.current_thread().name


def test_without_a_running_loop_the_coroutine_runs_in_this_thread() -> None:
    assert run_blocking(_loop_thread()) == threading.current_thread().name


async def test_inside_a_running_loop_it_runs_on_a_worker_and_returns_the_result() -> None:
    # asyncio.run here would raise "cannot be called from a running event loop"; the first
    # build of the example release inside an async test failed that way on a fresh machine.
    ran_on = run_blocking(_loop_thread())
    assert ran_on.startswith("blocking-port")


async def test_an_error_inside_reaches_the_caller() -> None:
    async def fails() -> None:
        raise ValueError("store unreachable")

    with pytest.raises(ValueError, match="store unreachable"):
        run_blocking(fails())
