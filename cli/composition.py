"""The composition root: the one place that wires real adapters to the core."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path

from edeliver.adapters.clock import SystemClock
from edeliver.adapters.event_store import open_deployments
from edeliver.adapters.hot_upgrade import HotUpgradeNodeShells
from edeliver.adapters.local_store import LocalDirectoryStore
from edeliver.adapters.ssh import AsyncsshNodeShells, ReleaseCommands
from edeliver.core.config import Config
from edeliver.core.errors import UsageError
from edeliver.core.orchestrator import Listener
from edeliver.core.rollout import Services


def who() -> str:
    """The deployer as user@host, recorded with every deployment and lock."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def release_store(project: Path, config: Config) -> LocalDirectoryStore:
    if config.store.kind != "local":
        raise UsageError(
            f"{config.file}: store.url: {config.store.kind} stores are not supported yet; "
            "use a local directory"
        )
    root = Path(config.store.url)
    return LocalDirectoryStore(root if root.is_absolute() else project / root)


def release_commands(config: Config) -> ReleaseCommands:
    """The configured start / stop / health commands over the defaults for a mix release."""
    given = {k: v for k, v in vars(config.commands).items() if v is not None}
    return ReleaseCommands(**given)


def _keep_releases(config: Config) -> int:
    """Nodes can serve several environments: keep as many releases as the most careful asks."""
    return max((env.keep_releases for env in config.environments.values()), default=5)


def real_services(project: Path, config: Config, listener: Listener | None = None) -> Services:
    """Services on SSH, the configured store, the configured event store and the wall clock."""
    known_hosts = config.known_hosts
    if known_hosts:
        path = Path(known_hosts).expanduser()
        known_hosts = str(path if path.is_absolute() else project / path)
    shells = AsyncsshNodeShells(
        known_hosts=known_hosts,
        commands=release_commands(config),
        keep_releases=_keep_releases(config),
    )
    store = release_store(project, config)
    return Services(
        deployments=open_deployments(project),
        shells=shells,
        store=store,
        clock=SystemClock(),
        user=who(),
        listener=listener,
        upgrade_shells=HotUpgradeNodeShells(shells, store, config.app) if config.app else None,
    )
