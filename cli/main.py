"""The `edeliver` command line: parse, call one service, render, map errors to exit codes."""

from __future__ import annotations

from edeliver.cli import (
    audit_commands,
    demo,
    init_command,
    node_commands,
    rollout_commands,
    store_commands,
    task_commands,
    upgrade_commands,
)
from edeliver.cli.app import Runtime, app

__all__ = ["Runtime", "app", "main"]
_COMMANDS = (
    audit_commands,
    demo,
    init_command,
    node_commands,
    rollout_commands,
    store_commands,
    task_commands,
    upgrade_commands,
)  # imported for their commands


def main() -> None:
    app()
