"""Optional dependencies: boto3 for an S3 store (`edeliver[s3]`), psycopg for a PostgreSQL
event store (`edeliver[postgres]`). The base install runs without them; the adapter that needs
one imports it only when the configuration asks for it, and its absence is one line naming the
extra to install rather than a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from edeliver.core.domain.errors import UsageError

# Each extra's top-level modules: an import error of any other module is a real error.
EXTRAS = {
    "s3": ("boto3", frozenset({"boto3", "botocore", "s3transfer"})),
    "postgres": ("psycopg", frozenset({"psycopg", "psycopg_pool", "psycopg_binary"})),
}


class MissingExtra(UsageError):
    """The configuration needs an optional dependency that is not installed."""


@contextmanager
def extra_needed(extra: str, what: str) -> Iterator[None]:
    """Imports inside the block need `extra`: a missing module of it becomes one line saying
    which extra to install, e.g. `what` = "store.url: an S3 store"."""
    library, modules = EXTRAS[extra]
    try:
        yield
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in modules:
            raise
        raise MissingExtra(
            f"{what} needs {library}, which is not installed: pip install 'edeliver[{extra}]'"
        ) from None
