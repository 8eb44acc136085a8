"""Where the event store lives: SQLite beside the project, or a shared PostgreSQL (DESIGN §5).

`EDELIVER_EVENTS` picks it: unset for `.deliver/events.db`, `sqlite:///path` for another SQLite
file, `postgresql://user[:password]@host[:port]/dbname[?param=value&…]` for PostgreSQL, where
every parameter psycopg (libpq) takes is passed on as it is: `sslmode`, `connect_timeout`,
`application_name`, `options`, `host=/socket/dir`… The password may also come from
`PGPASSWORD`; it is never printed (see `describe`).

`EDELIVER_EVENTS_PATIENCE` (seconds, default 60) bounds how long a failing store is retried
during a rollout before the rollout stops (see `edeliver.core.journal`).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from eventsourcing.sqlite import SQLiteConnection, SQLiteFactory

from edeliver.adapters.extras import extra_needed
from edeliver.core.errors import EdeliverError, UsageError, one_line
from edeliver.core.journal import Patience
from edeliver.core.service import Deployments

DEFAULT_DB = ".deliver/events.db"
# Our own setting: JSON of the URL's other parameters.
CONNECTION_PARAMETERS = "POSTGRES_CONNECTION_PARAMETERS"
_POSTGRES_PERSISTENCE = "edeliver.adapters.postgres_events:PostgresWithParameters"
_IN_URL_ONLY = {"host", "port", "dbname", "user", "password"}  # taken apart, not passed on


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
    if settings["PERSISTENCE_MODULE"] != _POSTGRES_PERSISTENCE:
        return None
    from edeliver.adapters.postgres_events import server_answer

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
        settings = _postgres(url, environ)
        _require_psycopg()
        return settings
    raise UsageError(
        f"EDELIVER_EVENTS: expected postgresql://… or sqlite:///path, got {describe(url)!r}"
    )


def describe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    try:
        password = parts.password
    except ValueError:
        password = None
    netloc = parts.netloc.replace(f":{password}@", ":***@") if password else parts.netloc
    return parts._replace(netloc=netloc, query=query).geturl()


def _require_psycopg() -> None:
    """The PostgreSQL persistence can be imported (psycopg is the `postgres` extra)."""
    with extra_needed("postgres", "EDELIVER_EVENTS: a PostgreSQL event store"):
        importlib.import_module(_POSTGRES_PERSISTENCE.partition(":")[0])


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


def _postgres(url: str, environ: Mapping[str, str]) -> dict[str, str]:
    parts = urlsplit(url)
    try:
        port = parts.port or 5432
    except ValueError:
        raise UsageError(f"EDELIVER_EVENTS: bad port in {describe(url)!r}") from None
    query = dict(parse_qsl(parts.query))
    host = query.get("host", parts.hostname or "")
    dbname = query.get("dbname", unquote(parts.path.lstrip("/")))
    user = query.get("user", unquote(parts.username or ""))
    if not host or not dbname or not user:
        raise UsageError(
            f"EDELIVER_EVENTS: expected postgresql://user@host/dbname, got {describe(url)!r}"
        )
    password = query.get("password", unquote(parts.password or ""))
    extra = {k: v for k, v in query.items() if k not in _IN_URL_ONLY}
    return {
        "PERSISTENCE_MODULE": _POSTGRES_PERSISTENCE,
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": query.get("port", str(port)),
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": password or environ.get("PGPASSWORD", ""),
        # How long to wait for a connection from the pool: the URL's connect_timeout, or 10 s.
        "POSTGRES_CONNECT_TIMEOUT": extra.get("connect_timeout", "10"),
        CONNECTION_PARAMETERS: json.dumps(extra),
    }
