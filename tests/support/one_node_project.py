"""The smallest project a command can run against: one node, one environment (`prod`), the
default local store; for tests and benches of the command line itself."""

from __future__ import annotations

from pathlib import Path

ONE_NODE_CONFIG = """
[nodes.web1]
host = "10.0.0.11"
user = "deploy"
path = "/opt/hello"

[environments.prod]
nodes = ["web1"]
"""


def one_node_project(directory: Path, before: str = "") -> Path:
    """`directory` with a .deliver/edeliver.toml of ONE_NODE_CONFIG, `before` put ahead of it."""
    (directory / ".deliver").mkdir(parents=True, exist_ok=True)
    (directory / ".deliver" / "edeliver.toml").write_text(before + ONE_NODE_CONFIG)
    return directory
