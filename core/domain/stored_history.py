"""Reading a deployment's stored events one by one, so that damage never hides the rest.

Replaying an aggregate stops at the first problem (a version missing, an event that does not
decode). `entries` reads each stored event on its own and says what is wrong where, so `log` can
print everything that is there and `abandon --force` can still end the deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, Recorder


@dataclass(frozen=True)
class StoredEntry:
    """One stored event: decoded, or why not; `missing_before` counts versions absent before it."""

    version: int
    event: DomainEventProtocol[UUID] | None
    problem: str = ""
    missing_before: int = 0

    @property
    def damage(self) -> str:
        """What is wrong at this entry, or ""."""
        parts = []
        if self.missing_before:
            first = self.version - self.missing_before
            span = f"{first}" if self.missing_before == 1 else f"{first}-{self.version - 1}"
            parts.append(f"version {span} missing")
        if self.problem:
            parts.append(f"version {self.version} does not decode: {self.problem}")
        return "; ".join(parts)


def entries(recorder: Any, mapper: Mapper[UUID], originator_id: UUID) -> list[StoredEntry]:
    """Every stored event of one aggregate in version order, each decoded on its own."""
    assert isinstance(recorder, Recorder)
    found, expected = [], 1
    for stored in recorder.select_events(originator_id):  # type: ignore[attr-defined]
        version = stored.originator_version
        try:
            event, problem = mapper.to_domain_event(stored), ""
        except Exception as error:  # a topic no longer importable, a state that is not JSON…
            event, problem = None, f"{type(error).__name__}: {error}"
        found.append(StoredEntry(version, event, problem, max(version - expected, 0)))
        expected = version + 1
    return found


def damage_of(stored: list[StoredEntry]) -> str:
    """All that is wrong with a stored history, in one line ("" when it replays)."""
    return "; ".join(e.damage for e in stored if e.damage)
