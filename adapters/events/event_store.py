"""Where the event store lives: SQLite beside the project, or a shared PostgreSQL (DESIGN §5).

`EDELIVER_EVENTS` picks it: unset for `.deliver/events.db`, `sqlite:///path` for another SQLite
file, `postgresql://user[:password]@host[:port]/dbname[?param=value&…]` for PostgreSQL, where
every parameter psycopg (libpq) takes is passed on as it is: `sslmode`, `connect_timeout`,
`application_name`, `options`, `host=/socket/dir`… The password may also come from
`PGPASSWORD`; it is never printed (see `describe`).

`EDELIVER_EVENTS_PATIENCE` (seconds, default 60) bounds how long a failing store is retried
during a rollout before the rollout stops (see `edeliver.core.usecases.journal`).
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eventsourcing.sqlite import SQLiteConnection, SQLiteFactory

from edeliver.adapters.events.postgres_url import POSTGRES_PERSISTENCE, describe, postgres_settings
from edeliver.adapters.local.extras import extra_needed
from edeliver.core.domain.errors import EdeliverError, UsageError, one_line
from edeliver.core.usecases.journal import Patience
from edeliver.core.usecases.service import Deployments

DEFAULT_DB = ".deliver/events.db"


def open_deployments(project: Path, url: str | None = None) -> Deployments:
    """The Deployments application on the configured store."""
    url = url if url is not None else os.environ.get("EDELIVER_EVENTS", "")
    where = _store_name(project, url)
    settings = store_settings(project, url, os.environ)
    try:
        deployments = Deployments(env=settings)
    except EdeliverError:
        raise
    except Exception as error:  # a database that is down, a directory we may not write
        why = _server_answer(settings) or one_line(error)
        raise EdeliverError(f"event store {where}: cannot be opened: {why}") from None
    deployments.store = where
    return deployments


def nothing_recorded(project: Path, url: str | None = None) -> bool:
    """Whether the store is a SQLite file not created yet: nothing was ever recorded there, and
    a command that only reads must not create it (nor its directory)."""
    url = url if url is not None else os.environ.get("EDELIVER_EVENTS", "")
    if url and not url.startswith("sqlite:///"):
        return False
    return not (Path(url.removeprefix("sqlite://")) if url else project / DEFAULT_DB).exists()


def _store_name(project: Path, url: str) -> str:
    """How messages name the store: a SQLite file by its path, a server by its URL without
    the password."""
    if not url:
        return str(project / DEFAULT_DB)
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite://")
    return describe(url)


def _server_answer(settings: Mapping[str, str]) -> str | None:
    """PostgreSQL's own reason for refusing a connection; None for SQLite."""
    if settings["PERSISTENCE_MODULE"] != POSTGRES_PERSISTENCE:
        return None
    from edeliver.adapters.events.postgres_events import server_answer

    return server_answer(settings)


def store_patience(environ: Mapping[str, str]) -> Patience:
    """How long a failing event store is retried mid-rollout (`EDELIVER_EVENTS_PATIENCE`)."""
    text = environ.get("EDELIVER_EVENTS_PATIENCE", "")
    if not text:
        return Patience()
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise UsageError(
            f"EDELIVER_EVENTS_PATIENCE: expected seconds (a number >= 0), got {text!r}"
        )
    return Patience(total=seconds)


def store_settings(project: Path, url: str, environ: Mapping[str, str]) -> dict[str, str]:
    """eventsourcing's persistence settings for an EDELIVER_EVENTS value."""
    if not url:
        return _sqlite(project / DEFAULT_DB)
    if url.startswith("sqlite:///"):
        return _sqlite(Path(url.removeprefix("sqlite://")))
    if url.startswith(("postgresql://", "postgres://")):
        settings = postgres_settings(url, environ)
        _require_psycopg()
        return settings
    raise UsageError(
        f"EDELIVER_EVENTS: expected postgresql://… or sqlite:///path, got {describe(url)!r}"
    )


def _require_psycopg() -> None:
    """The PostgreSQL persistence can be imported (psycopg is the `postgres` extra)."""
    with extra_needed("postgres", "EDELIVER_EVENTS: a PostgreSQL event store"):
        importlib.import_module(POSTGRES_PERSISTENCE.partition(":")[0])


class SQLiteSyncedAtCheckpoints(SQLiteFactory):
    """eventsourcing's SQLite persistence (WAL), with `PRAGMA synchronous = NORMAL`: a commit
    is written to the WAL file, so a deployer that crashes or is killed loses no stored event,
    but fsync waits for checkpoints, not every commit (measured here: 9.3 ms a commit with
    FULL, 0.06 ms with NORMAL). Only a power loss or an OS crash of the deploying machine can
    lose the last commits; a resumed deployment then re-runs steps that are idempotent."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        pool = self.datastore.pool
        create = pool._create_connection  # eventsourcing has no hook for pragmas

        def created() -> SQLiteConnection:
            connection = create()
            connection._sqlite_conn.execute("PRAGMA synchronous = NORMAL")
            return connection

        pool._create_connection = created  # type: ignore[method-assign]


def _sqlite(path: Path) -> dict[str, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "PERSISTENCE_MODULE": f"{__name__}:{SQLiteSyncedAtCheckpoints.__qualname__}",
        "SQLITE_DBNAME": str(path),
        # Two deployers on one file wait for each other's transaction instead of failing.
        "SQLITE_LOCK_TIMEOUT": "10",
    }
