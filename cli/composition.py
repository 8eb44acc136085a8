"""The composition root: the one place that wires real adapters to the core."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path

from edeliver.adapters.clock import SystemClock
from edeliver.adapters.event_store import open_deployments
from edeliver.adapters.legacy_config import legacy_hook_tasks
from edeliver.adapters.local_commands import LocalCommandHost
from edeliver.adapters.local_store import LocalDirectoryStore
from edeliver.adapters.ssh import AsyncsshNodeShells, ReleaseCommands
from edeliver.adapters.task_files import discover
from edeliver.core.config import Config
from edeliver.core.errors import UsageError
from edeliver.core.orchestrator import Listener
from edeliver.core.rollout import Services
from edeliver.core.task_runs import LoadedTask


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


def known_hosts_file(project: Path, config: Config) -> str | None:
    """The configured known_hosts file, relative to the project; None: SSH's own default."""
    if not config.known_hosts:
        return None
    path = Path(config.known_hosts).expanduser()
    return str(path if path.is_absolute() else project / path)


def project_tasks(project: Path) -> list[LoadedTask]:
    """The tasks under .deliver/tasks/ and a legacy .deliver/config's hooks; an unusable task
    file raises here, before anything connects to a node."""
    return [*discover(project), *legacy_hook_tasks(project)]


def with_tasks(
    services: Services, project: Path, config: Config, tasks: list[LoadedTask]
) -> Services:
    """Services that run `tasks`: local ones from the project dir, legacy `__remote` checking
    host keys against the same known_hosts file as every other connection."""
    known_hosts = known_hosts_file(project, config)
    services.tasks, services.local = tasks, LocalCommandHost(project)
    services.task_env = {"EDELIVER_KNOWN_HOSTS": known_hosts} if known_hosts else {}
    return services


def real_services(project: Path, config: Config, listener: Listener | None = None) -> Services:
    """Services on SSH, the configured store, the configured event store and the wall clock."""
    known_hosts = known_hosts_file(project, config)
    return Services(
        deployments=open_deployments(project),
        shells=AsyncsshNodeShells(
            known_hosts=known_hosts,
            commands=release_commands(config),
            keep_releases=_keep_releases(config),
        ),
        store=release_store(project, config),
        clock=SystemClock(),
        user=who(),
        listener=listener,
    )
