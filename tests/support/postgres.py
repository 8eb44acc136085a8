"""A throwaway PostgreSQL cluster from Debian's package, owned by the test session."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_postgres(*argv: str) -> None:
    """initdb and pg_ctl refuse to run as root, so they run as the postgres user."""
    subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True)


class PostgresServer:
    """initdb into a temp dir, then pg_ctl start on a free loopback port; stop() removes it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="edeliver-pg-"))
        self.data, self.port = self.root / "data", _free_port()
        shutil.chown(self.root, "postgres", "postgres")

    def start(self) -> PostgresServer:
        _as_postgres(str(BIN / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres")
        self.run()
        return self

    def run(self) -> None:
        """Start the server on its data (again, after `crash`)."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        _as_postgres(
            str(BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.root / "log"),
            "start",
        )

    def crash(self) -> None:
        """Stop it at once, as a crash or a failover would, keeping its data."""
        _as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def stop(self) -> None:
        self.crash()
        shutil.rmtree(self.root, ignore_errors=True)

    def new_database(self) -> str:
        """A fresh empty database; returns its EDELIVER_EVENTS URL."""
        name = f"edeliver_{uuid.uuid4().hex[:12]}"
        _as_postgres(
            str(BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name
        )
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"
