"""An `EDELIVER_EVENTS` postgresql:// URL as eventsourcing's settings, and any URL without its
password. Apart from `event_store` (which reads the URL) and `postgres_events` (the persistence
psycopg runs, reading the settings back), so that both share them without importing each
other; reading a URL needs no psycopg.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from edeliver.core.domain.errors import UsageError

# Our own setting: JSON of the URL's other parameters.
CONNECTION_PARAMETERS = "POSTGRES_CONNECTION_PARAMETERS"
POSTGRES_PERSISTENCE = "edeliver.adapters.events.postgres_events:PostgresWithParameters"
_IN_URL_ONLY = {"host", "port", "dbname", "user", "password"}  # taken apart, not passed on


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


def postgres_settings(url: str, environ: Mapping[str, str]) -> dict[str, str]:
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
        "PERSISTENCE_MODULE": POSTGRES_PERSISTENCE,
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": query.get("port", str(port)),
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": password or environ.get("PGPASSWORD", ""),
        # How long to wait for a connection from the pool: the URL's connect_timeout, or 10 s.
        "POSTGRES_CONNECT_TIMEOUT": extra.get("connect_timeout", "10"),
        CONNECTION_PARAMETERS: json.dumps(extra),
    }
