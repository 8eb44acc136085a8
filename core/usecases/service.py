"""The application service: deployments and environment locks in one event store (DESIGN §5).

`Deployments` is an eventsourcing Application. Which store it writes to (SQLite, PostgreSQL, or
memory) is decided by the environment it is given, never here. The lock is an aggregate per
environment: optimistic concurrency on it makes "at most one active deployment" race-free, and
its events are the audit of who held it when.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError

from edeliver.core.domain.deployment import ABANDONED, Deployment, require_reason
from edeliver.core.domain.environment_lock import DEPLOYMENT, EnvironmentLock
from edeliver.core.domain.errors import (
    DamagedHistory,
    EdeliverError,
    EventStoreError,
    HistoryConflict,
    NotFoundError,
    one_line,
)
from edeliver.core.domain.stored_history import StoredEntry, damage_of, entries

_SUMMARY_EVENTS = (Deployment.Started, Deployment.Finished, Deployment.Abandoned)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DeploymentSummary:
    """One row of `edeliver history`."""

    id: str
    app: str
    environment: str
    version: str
    started_by: str
    started_at: str
    outcome: str | None
    ended_at: str | None
    subset: bool = False  # to some of the environment's nodes (--node / --label)
    nodes: tuple[str, ...] = ()


class Deployments(Application[UUID]):
    """Starts, records, ends and reads deployments; holds the environment locks.

    Every error of the store leaves as an `EventStoreError` naming `store` (set by whoever opens
    it, without the password): `HistoryConflict` when another writer stored the same aggregate's
    next event first, `transient` when trying again later may work."""

    name = "Deployments"
    store = "of this project"  # set to the path or URL by whoever opens it

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        with self.store_errors():
            return super().save(*objs, **kwargs)

    @contextlib.contextmanager
    def store_errors(self) -> Iterator[None]:
        """Turn the store's errors into ours, each naming the store, in one place."""
        try:
            yield
        except IntegrityError as error:
            raise HistoryConflict(
                f"event store {self.store}: another deployer stored the same deployment's (or "
                f"lock's) next event first; nothing of ours was stored over it ({one_line(error)})"
            ) from None
        except (OperationalError, InterfaceError) as error:  # locked, full, connection lost
            message = f"event store {self.store}: {one_line(error)}"
            raise EventStoreError(message, transient=True) from None
        except EdeliverError:
            raise
        except Exception as error:  # anything else the store raised
            raise EventStoreError(f"event store {self.store}: {one_line(error)}") from None

    def begin(self, deployment: Deployment) -> None:
        """Take the environment's lock for a new deployment and store both, in one transaction."""
        # Collected once: a save that fails has still taken them off the aggregate.
        started = deployment.collect_events()
        self.take_environment(
            deployment.app, deployment.environment, str(deployment.id),
            deployment.started_by, deployment.started_at, DEPLOYMENT, started,
        )  # fmt: skip

    def take_environment(
        self, app: str, environment: str, holder_id: str, holder: str, at: str, what: str,
        started: Sequence[Any],
    ) -> None:  # fmt: skip
        """Take the environment's lock for `holder_id` (a deployment, or an operation doing
        `what`) and store it with the holder's first events, in one transaction."""
        for attempt in range(2):
            lock = self._lock(app, environment)
            lock.acquire(holder_id, holder, at, what)
            try:
                self.save(lock, *started)
                return
            except HistoryConflict:
                # Another deployer took the lock between our read and our write: read it again,
                # and `acquire` now names the holder.
                if attempt:
                    raise

    def release_environment(
        self, app: str, environment: str, holder_id: str, outcome: str, *ended: Any
    ) -> None:
        """Release the environment held by `holder_id` and store its last events, at once."""
        lock = self._lock(app, environment)
        lock.release(holder_id, outcome)
        self.save(*ended, lock)

    def environment_lock(self, app: str, environment: str) -> EnvironmentLock:
        """The lock as stored: who holds the environment, if anyone (`edeliver lock status`)."""
        return self._lock(app, environment)

    def stored_events(self, classes: tuple[type, ...]) -> Iterator[DomainEventProtocol[UUID]]:
        """Every stored event of these classes, in the order stored (damaged ones passed over)."""
        return self._select(classes)

    def end(self, deployment: Deployment) -> None:
        """Store the deployment's last events and release its environment, in one transaction."""
        self.release_environment(
            deployment.app, deployment.environment, str(deployment.id), deployment.outcome or "",
            deployment,
        )  # fmt: skip

    def abandon(self, deployment: Deployment, reason: str, by: str, at: str) -> None:
        """End an interrupted deployment without finishing it, releasing its environment."""
        deployment.abandon(reason, by, at)
        self.end(deployment)

    def abandon_damaged(self, summary: DeploymentSummary, reason: str, by: str, at: str) -> None:
        """Abandon a deployment whose history does not replay: its `Abandoned` event goes after
        the last stored version, and its environment is released, in one transaction."""
        require_reason(reason)
        deployment_id = UUID(summary.id)
        stored = self.entries(deployment_id)
        abandoned = Deployment.Abandoned(  # type: ignore[attr-defined]
            originator_id=deployment_id,
            originator_version=stored[-1].version + 1,
            timestamp=Deployment.Abandoned.create_timestamp(),  # type: ignore[attr-defined]
            reason=f"{reason} (history damaged: {damage_of(stored)})",
            by=by,
            at=at,
        )
        lock = self._lock(summary.app, summary.environment)
        lock.release(summary.id, ABANDONED)
        self.save(abandoned, lock)

    def load(self, id_or_prefix: str) -> Deployment:
        """A deployment by its id or an unambiguous prefix of it; DamagedHistory if its stored
        events do not replay."""
        deployment_id = UUID(self.find(id_or_prefix).id)
        try:
            with self.store_errors():
                found: object = self.repository.get(deployment_id, projector_func=replay)
        except EventStoreError as error:
            if error.transient or isinstance(error, HistoryConflict):
                raise
            raise self._damaged(deployment_id) from None
        assert isinstance(found, Deployment)
        return found

    def find(self, id_or_prefix: str) -> DeploymentSummary:
        """The deployment an id or an unambiguous prefix of it names."""
        matches = [s for s in self.history() if s.id.startswith(id_or_prefix.lower())]
        if len(matches) != 1:
            problem = "matches no deployment" if not matches else "is ambiguous"
            raise NotFoundError(f"deployment id {id_or_prefix!r} {problem}")
        return matches[0]

    def entries(self, deployment_id: UUID) -> list[StoredEntry]:
        """A deployment's stored events each on its own, damaged or not (see `stored_history`)."""
        with self.store_errors():
            return entries(self.recorder, self.mapper, deployment_id)

    def _damaged(self, deployment_id: UUID) -> DamagedHistory:
        short = str(deployment_id)[:8]
        damage = damage_of(self.entries(deployment_id)) or "it does not replay"
        return DamagedHistory(
            f"deployment {short}: its stored history is damaged ({damage}); `edeliver log "
            f"{short}` prints what is there, `edeliver abandon {short} --force --reason ...` "
            "releases its environment"
        )

    def latest(self, environment: str | None = None) -> Deployment:
        return self.load(self.latest_summary(environment).id)

    def latest_summary(self, environment: str | None = None) -> DeploymentSummary:
        rows = [s for s in self.history() if environment in (None, s.environment)]
        if not rows:
            raise NotFoundError("no deployments recorded yet")
        return rows[-1]

    def unfinished(self, environment: str | None = None) -> list[DeploymentSummary]:
        return [
            s for s in self.history() if s.outcome is None and environment in (None, s.environment)
        ]

    def lock_holder(self, app: str, environment: str) -> str | None:
        return self._lock(app, environment).deployment_id

    def history(self) -> list[DeploymentSummary]:
        """Every deployment in the order they started, with its outcome when it has one."""
        rows: dict[str, dict[str, Any]] = {}
        for domain_event in self._select(_SUMMARY_EVENTS):
            fields = _fields(domain_event)
            row = rows.setdefault(str(domain_event.originator_id), {})
            if isinstance(domain_event, Deployment.Started):  # type: ignore[attr-defined]
                row.update(
                    app=fields["app"],
                    environment=fields["environment"],
                    version=fields["version"],
                    started_by=fields["started_by"],
                    started_at=fields["started_at"],
                    outcome=None,
                    ended_at=None,
                    subset=fields.get("subset", False),
                    nodes=tuple(fields["order"]),
                )
            else:
                is_abandoned = isinstance(domain_event, Deployment.Abandoned)  # type: ignore[attr-defined]
                row.update(
                    outcome=ABANDONED if is_abandoned else fields["outcome"], ended_at=fields["at"]
                )
        return [DeploymentSummary(id=i, **r) for i, r in rows.items() if "app" in r]

    def events_of(self, deployment_id: UUID, after: int = 0) -> list[DomainEventProtocol[UUID]]:
        """The stored events of one deployment, in order, after version `after`."""
        with self.store_errors():
            return list(self.events.get(deployment_id, gt=after or None))

    def _lock(self, app: str, environment: str) -> EnvironmentLock:
        lock_id = EnvironmentLock.create_id(app, environment)
        with self.store_errors():
            if lock_id in self.repository:
                found: object = self.repository.get(lock_id)
                assert isinstance(found, EnvironmentLock)
                return found
        return EnvironmentLock(app, environment)

    def _select(self, classes: tuple[type, ...]) -> Iterator[DomainEventProtocol[UUID]]:
        """The stored events of these classes, in the order stored; one that does not decode is
        passed over here (`log` of its deployment shows it)."""
        topics = [f"{c.__module__}:{c.__qualname__}" for c in classes]
        start, page = 1, 500
        while True:
            with self.store_errors():
                notifications = self.recorder.select_notifications(
                    start=start, limit=page, topics=topics
                )
            for notification in notifications:
                decoded = self._decoded(notification)
                if decoded is not None:
                    yield decoded
            if len(notifications) < page:
                return
            start = notifications[-1].id + 1

    def _decoded(self, notification: Any) -> DomainEventProtocol[UUID] | None:
        try:
            return self.mapper.to_domain_event(notification)
        except Exception:  # damaged: passed over here, `log` of its deployment shows it
            return None


def _fields(domain_event: object) -> dict[str, Any]:
    return dict(vars(domain_event))


def replay(aggregate: Any, events: Iterable[Any]) -> Any:
    """Each stored event applied in turn: eventsourcing's own projector, less the check of
    every event against a runtime Protocol, which was most of a long deployment's replay."""
    for stored in events:
        aggregate = stored.mutate(aggregate)
    return aggregate
