"""Where the event store lives: SQLite beside the project, or a shared PostgreSQL (DESIGN §5).

`EDELIVER_EVENTS` picks it: unset for `.deliver/events.db`, `sqlite:///path` for another SQLite
file, `postgresql://user[:password]@host[:port]/dbname[?host=/socket/dir]` for PostgreSQL. The
password may also come from `PGPASSWORD`; it is never printed (see `describe`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from edeliver.core.errors import UsageError
from edeliver.core.service import Deployments

DEFAULT_DB = ".deliver/events.db"


def open_deployments(project: Path, url: str | None = None) -> Deployments:
    """The Deployments application on the configured store."""
    url = url if url is not None else os.environ.get("EDELIVER_EVENTS", "")
    return Deployments(env=store_settings(project, url, os.environ))


def store_settings(project: Path, url: str, environ: Mapping[str, str]) -> dict[str, str]:
    """eventsourcing's persistence settings for an EDELIVER_EVENTS value."""
    if not url:
        return _sqlite(project / DEFAULT_DB)
    if url.startswith("sqlite:///"):
        return _sqlite(Path(url.removeprefix("sqlite://")))
    if url.startswith(("postgresql://", "postgres://")):
        return _postgres(url, environ)
    raise UsageError(
        f"EDELIVER_EVENTS: expected postgresql://… or sqlite:///path, got {describe(url)!r}"
    )


def describe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def _sqlite(path: Path) -> dict[str, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(path),
        # Two deployers on one file wait for each other's transaction instead of failing.
        "SQLITE_LOCK_TIMEOUT": "10",
    }


def _postgres(url: str, environ: Mapping[str, str]) -> dict[str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or ""])[0]
    dbname = unquote(parts.path.lstrip("/"))
    if not host or not dbname or not parts.username:
        raise UsageError(
            f"EDELIVER_EVENTS: expected postgresql://user@host/dbname, got {describe(url)!r}"
        )
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_USER": unquote(parts.username),
        "POSTGRES_PASSWORD": unquote(parts.password or environ.get("PGPASSWORD", "")),
        "POSTGRES_CONNECT_TIMEOUT": "10",
    }
