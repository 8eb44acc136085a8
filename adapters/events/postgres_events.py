"""The event store on PostgreSQL: eventsourcing's persistence with psycopg, imported only when
`EDELIVER_EVENTS` names a PostgreSQL server (the `edeliver[postgres]` extra)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MethodType
from typing import Any

import psycopg
from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.postgres import PostgresFactory

from edeliver.adapters.events.postgres_url import CONNECTION_PARAMETERS
from edeliver.core.domain.errors import one_line


class PostgresWithParameters(PostgresFactory):
    """eventsourcing's PostgreSQL persistence, plus the connection parameters of the URL."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        # The pool opens its first connection later, with these keyword arguments.
        extra = json.loads(self.env.get(CONNECTION_PARAMETERS) or "{}")
        kwargs = self.datastore.pool.kwargs
        assert isinstance(kwargs, dict)
        kwargs.update(extra)

    def application_recorder(self) -> ApplicationRecorder:
        """The recorder (its tables are made here: the first connection); if the server cannot
        be reached, the pool's threads are stopped now rather than left trying to connect."""
        try:
            recorder = super().application_recorder()
        except Exception:
            self.close()
            raise
        # eventsourcing tries a failed insert 10 times, each waiting up to connect_timeout for
        # a connection: 100 s that no one can cut short while the server is down. Our journal
        # retries on its own terms (EDELIVER_EVENTS_PATIENCE), so here a write is one try.
        one_try = getattr(type(recorder).insert_events, "__wrapped__", None)
        if one_try is not None:
            recorder.insert_events = MethodType(one_try, recorder)  # type: ignore[method-assign]
        return recorder


def server_answer(settings: Mapping[str, str]) -> str | None:
    """What PostgreSQL answers to one plain connection: the pool only says it got none in
    time, and the server's reason (no SSL, a bad password, no such database) is what helps."""
    try:
        psycopg.connect(**_connection_kwargs(settings)).close()
    except psycopg.Error as error:
        return one_line(error)
    return None


def _connection_kwargs(settings: Mapping[str, str]) -> dict[str, Any]:
    """psycopg's keyword arguments for the settings `event_store` made."""
    given = {
        "host": settings["POSTGRES_HOST"],
        "port": settings["POSTGRES_PORT"],
        "dbname": settings["POSTGRES_DBNAME"],
        "user": settings["POSTGRES_USER"],
        "password": settings["POSTGRES_PASSWORD"],
        "connect_timeout": settings["POSTGRES_CONNECT_TIMEOUT"],
    }
    return {**given, **json.loads(settings[CONNECTION_PARAMETERS])}
