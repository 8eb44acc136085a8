"""EDELIVER_EVENTS as the psycopg connection: every parameter of the URL honoured."""

from __future__ import annotations

from pathlib import Path

from edeliver.adapters.events.event_store import store_settings
from edeliver.adapters.events.postgres_events import _connection_kwargs

URL = (
    "postgresql://deployer:s3cret@db.example:6432/edeliver"
    "?sslmode=require&application_name=ci&connect_timeout=7&target_session_attrs=read-write"
)


def test_the_urls_parameters_become_connection_arguments(tmp_path: Path) -> None:
    """sslmode, application_name and the like reach psycopg, beside host, port, db and user."""
    kwargs = _connection_kwargs(store_settings(tmp_path, URL, {}))
    assert kwargs["sslmode"] == "require" and kwargs["application_name"] == "ci"
    assert kwargs["target_session_attrs"] == "read-write"
    assert (kwargs["host"], kwargs["port"], kwargs["dbname"]) == ("db.example", "6432", "edeliver")
    assert (kwargs["user"], kwargs["password"]) == ("deployer", "s3cret")


def test_a_url_without_password_takes_pgpassword(tmp_path: Path) -> None:
    """As libpq does: the password comes from PGPASSWORD when the URL has none."""
    settings = store_settings(tmp_path, "postgresql://deployer@db.example/edeliver", {
        "PGPASSWORD": "from-env"
    })  # fmt: skip
    assert _connection_kwargs(settings)["password"] == "from-env"
