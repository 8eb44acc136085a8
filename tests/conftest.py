"""Fixtures shared by every tier: real servers the tests start and stop themselves."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.support.postgres import PostgresServer

# Property tests: the full search in CI (CI=true), a twentieth of it for a quick local run; pick one
# with HYPOTHESIS_PROFILE=ci|dev. Tests size their own searches from `settings().max_examples`.
settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("dev", max_examples=15, deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

# A suite started in the background of a non-interactive shell (`cmd &`) inherits SIGINT
# ignored, and an ignored signal stays ignored in every process it starts: the tests that
# press Ctrl-C on a real edeliver would see it do nothing. Caught, it is reset in children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL 15 server on a loopback port for the whole session."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()
