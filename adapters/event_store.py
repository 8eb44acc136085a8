"""Where the event store lives: SQLite beside the project, or a shared PostgreSQL (DESIGN §5).

`EDELIVER_EVENTS` picks it: unset for `.deliver/events.db`, `sqlite:///path` for another SQLite
file, `postgresql://user[:password]@host[:port]/dbname[?host=/socket/dir]` for PostgreSQL. The
password may also come from `PGPASSWORD`; it is never printed (see `describe`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from edeliver.core.errors import EdeliverError, UsageError
from edeliver.core.service import Deployments

DEFAULT_DB = ".deliver/events.db"


def open_deployments(project: Path, url: str | None = None) -> Deployments:
    """The Deployments application on the configured store."""
    url = url if url is not None else os.environ.get("EDELIVER_EVENTS", "")
    where = describe(url) if url else str(project / DEFAULT_DB)
    try:
        return Deployments(env=store_settings(project, url, os.environ))
    except EdeliverError:
        raise
    except Exception as error:  # a database that is down, a directory we may not write
        raise EdeliverError(f"event store {where}: cannot be opened: {error}") from None


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
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    try:
        password = parts.password
    except ValueError:
        password = None
    netloc = parts.netloc.replace(f":{password}@", ":***@") if password else parts.netloc
    return parts._replace(netloc=netloc, query=query).geturl()


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
    try:
        port = parts.port or 5432
    except ValueError:
        raise UsageError(f"EDELIVER_EVENTS: bad port in {describe(url)!r}") from None
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
        "POSTGRES_PORT": str(port),
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_USER": unquote(parts.username),
        "POSTGRES_PASSWORD": unquote(parts.password or environ.get("PGPASSWORD", "")),
        "POSTGRES_CONNECT_TIMEOUT": "10",
    }
