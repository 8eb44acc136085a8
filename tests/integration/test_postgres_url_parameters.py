"""`EDELIVER_EVENTS=postgresql://…?param=value` on a real PostgreSQL server: the parameters of
the URL reach the connection (psycopg/libpq), and one the server refuses is one line."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from edeliver.adapters.events.event_store import open_deployments
from edeliver.cli.main import Runtime, app
from tests.support.postgres import PostgresServer


def test_the_urls_parameters_reach_the_server(postgres: PostgresServer, tmp_path: Path) -> None:
    """application_name and options given in the URL are what the server sees on our session."""
    url = postgres.new_database()
    deployments = open_deployments(
        tmp_path, f"{url}?application_name=edeliver-probe&options=-c%20lock_timeout%3D4321"
    )
    try:
        assert deployments.history() == []  # a connection of the pool is open from here on
        with psycopg.connect(f"{url.rsplit('/', 1)[0]}/postgres", autocommit=True) as probe:
            names = [
                row[0]
                for row in probe.execute(
                    "SELECT application_name FROM pg_stat_activity WHERE datname = %s",
                    (url.rsplit("/", 1)[1],),
                )
            ]
        assert "edeliver-probe" in names
        with deployments.recorder.datastore.get_connection() as ours:  # type: ignore[attr-defined]
            assert ours.execute("SHOW lock_timeout").fetchone()["lock_timeout"] == "4321ms"
    finally:
        deployments.close()


def test_sslmode_disable_is_accepted(postgres: PostgresServer, tmp_path: Path) -> None:
    """A server without SSL takes `sslmode=disable`."""
    deployments = open_deployments(tmp_path, f"{postgres.new_database()}?sslmode=disable")
    try:
        assert deployments.history() == []
    finally:
        deployments.close()


def test_sslmode_require_on_a_server_without_ssl_is_one_line_naming_the_store(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server refuses what the URL asks for: one line naming the store, exit 1."""
    url = f"{postgres.new_database()}?sslmode=require&connect_timeout=3"
    monkeypatch.setenv("EDELIVER_EVENTS", url)
    result = CliRunner().invoke(app, ["history"], obj=Runtime(project=tmp_path))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"edeliver: event store {url}: ")
    assert "SSL" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.splitlines()) == 1
