"""Fixtures for tests against real infrastructure on this machine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edeliver.adapters.node.local_fleet import LocalFleet

FleetFactory = Callable[..., LocalFleet]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[FleetFactory]:
    """A factory of started local sshd fleets; every fleet it made is stopped afterwards.

    `fleet(3)` or `fleet(2, deploy_path="/srv/other", name_prefix="web")`. Teardown runs even
    when the test failed, and stops every fleet even when stopping one of them fails.
    """
    made: list[LocalFleet] = []

    def make(size: int = 3, **options: Any) -> LocalFleet:
        local = LocalFleet(tmp_path / f"fleet{len(made)}", size, **options)
        made.append(local)  # before start(): a half-started fleet is stopped too
        local.start()
        return local

    yield make
    errors: list[BaseException] = []
    for local in reversed(made):
        try:
            local.stop()
        except Exception as error:
            errors.append(error)
    if errors:
        raise errors[0]
