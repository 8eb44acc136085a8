"""A real S3 endpoint for tests: moto's standalone server over HTTP, on a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

# moto accepts any key unless told to check them; these are what the deployer "has".
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAEDELIVERTEST",
    "AWS_SECRET_ACCESS_KEY": "edeliver-test-secret-never-printed",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto_server(check_credentials: bool = False) -> Iterator[str]:
    """Start `moto_server` on 127.0.0.1 and yield its endpoint URL; stop it after.

    With `check_credentials`, moto enforces IAM from the first request: any key is unknown.
    """
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0" if check_credentials else "inf"}
    command = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    assert command, "moto_server is missing: scripts/dev setup installs moto[server]"
    server = subprocess.Popen(
        [command, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(endpoint, server)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_up(endpoint: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"moto_server exited with {server.returncode}")
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer on {endpoint} within 30s")


def s3_client(endpoint: str) -> Any:
    """A plain boto3 client, to arrange and inspect the bucket behind the store's back."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
    )
