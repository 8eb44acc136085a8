"""The unit tier is pure: a test here that starts a process or opens a connection fails,
naming what it started, so a test that needs one goes to tests/integration."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Callable

import asyncssh  # noqa: F401  (its import runs `ldconfig -p` to find crypto libraries: before the guard)
import pytest


def _refused(what: str) -> Callable[..., object]:
    def refuse(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError(f"a unit test started {what}: it belongs in tests/integration")

    return refuse


@pytest.fixture(autouse=True)
def _no_processes_or_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess.Popen, "__init__", _refused("a process"))
    monkeypatch.setattr(asyncio, "create_subprocess_exec", _refused("a process"))
    monkeypatch.setattr(asyncio, "create_subprocess_shell", _refused("a process"))
    monkeypatch.setattr(os, "fork", _refused("a fork"))
    monkeypatch.setattr(socket.socket, "connect", _refused("a connection"))
