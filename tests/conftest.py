"""Fixtures shared by every tier: real servers the tests start and stop themselves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL 15 server on a loopback port for the whole session."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()
