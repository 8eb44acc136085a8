"""The composition root's factories: which adapters serve the store, node and event-store ports
for a config, and the project's own files (tasks, a legacy config), each built when called.

They are the real ones a `Runtime` (`composition`) uses by default; a test hands its Runtime
fakes instead. Each function imports the adapters it wires when it is called, so a command pays
only for what it uses: `plan` loads no store or event-store adapter, and boto3 is imported only
for an S3 store.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edeliver.adapters import settings
from edeliver.adapters.settings import Store
from edeliver.core.domain.app import AppNotSet, app_name
from edeliver.core.domain.config import Config, NodeConfig
from edeliver.core.domain.model import Artifact
from edeliver.core.domain.redaction import Redactor
from edeliver.core.domain.runtime_env import secret_variables
from edeliver.core.ports import NodeShell, NodeShells

if TYPE_CHECKING:
    from edeliver.adapters.node.local_fleet import LocalFleet
    from edeliver.adapters.node.node_control import AsyncsshNodeControl as NodeControl
    from edeliver.adapters.node.ssh import AsyncsshNodeShells
    from edeliver.adapters.node.transfer import Delivery
    from edeliver.core.domain.legacy import Migration
    from edeliver.core.usecases.loaded_task import LoadedTask
    from edeliver.core.usecases.service import Deployments


@dataclass(frozen=True)
class Adapters:
    """The adapters behind the store and node ports for one use; tests give fakes instead."""

    store: Store
    shells: NodeShells
    upgrade_shells: NodeShells | None = None  # None: hot upgrades go through `shells`


def real_adapters(project: Path, config: Config) -> Adapters:
    """The configured store, SSH shells for full releases and for hot upgrades."""
    store = settings.release_store(project, config)
    shells = node_shells(project, config, settings.delivery(config, store))
    return Adapters(store, shells, _upgrade_shells(shells, store, config))


def node_shells(
    project: Path, config: Config, deliver: Delivery | None = None
) -> AsyncsshNodeShells:
    """Connections to the configured nodes: known hosts, ssh config, the release's commands and
    each node's limits and runtime settings; `deliver`: how releases reach them (deployments)."""
    from edeliver.adapters.node.runtime_env_files import RuntimeEnvFiles
    from edeliver.adapters.node.ssh import AsyncsshNodeShells

    return AsyncsshNodeShells(
        known_hosts=settings.known_hosts_file(project, config),
        ssh_config=settings.ssh_config_files(project, config),
        commands=settings.release_commands(config),
        keep_releases=settings.keep_releases(config),
        delivery=deliver,
        node_timeouts=settings.node_timeouts(config),
        runtime_env=RuntimeEnvFiles(config, os.environ),
    )


OpenNodeControl = Callable[[NodeConfig], Awaitable["NodeControl"]]  # operates one node's release


def node_controls(project: Path, config: Config) -> OpenNodeControl:
    """Opens a connection that operates the app's release on a node (start, stop, eval...)."""
    from edeliver.adapters.node.node_control import open_control

    shells, app = node_shells(project, config), app_name(config)
    return lambda node: open_control(shells, node, app)


class _NoHotUpgrades:
    """Upgrade-mode shells without an app name to find the packages by: a clear refusal."""

    def __init__(self, config: Config) -> None:
        self.config_file = config.file

    async def open(self, node: NodeConfig) -> NodeShell:
        raise AppNotSet(self.config_file)

    def expect(self, artifact: Artifact) -> None:
        pass  # `open` refuses: nothing will be sent


def _upgrade_shells(shells: AsyncsshNodeShells, store: Store, config: Config) -> NodeShells:
    """The packages reach the nodes like releases do (the shells' delivery: pushed from the
    local store's files or a verified local copy, or pulled by the nodes from the store)."""
    from edeliver.adapters.node.hot_upgrade import HotUpgradeNodeShells

    if config.app:
        return HotUpgradeNodeShells(shells, store, config.app)
    return _NoHotUpgrades(config)


def project_tasks(project: Path) -> list[LoadedTask]:
    """The tasks under .deliver/tasks/ and a legacy .deliver/config's hooks; an unusable task
    file raises here, before anything connects to a node."""
    from edeliver.adapters.local.legacy_config import legacy_hook_tasks
    from edeliver.adapters.local.task_files import discover

    return [*discover(project), *legacy_hook_tasks(project)]


def deployer_secrets(config: Config | None = None) -> Redactor:
    """What output kept in events or printed must not show: the secrets of this environment,
    which local tasks inherit and node tasks may be handed, and the values of the variables
    the config names as secrets (`from_env`, the cookies', `redact`)."""
    named = secret_variables(config) if config is not None else set()
    return Redactor.of_environment(os.environ, also=named)


def migrate_project(project: Path) -> Migration:
    """edeliver 1.x's .deliver/config as an edeliver.toml, with what stays behind."""
    from edeliver.adapters.local.legacy_config import LEGACY_CONFIG
    from edeliver.adapters.local.legacy_config import migrate_project as _migrate_project
    from edeliver.adapters.local.ssh_config import config_files

    return _migrate_project(project, config_files(None, project), str(LEGACY_CONFIG))


def local_fleet(directory: Path, size: int) -> LocalFleet:
    """`size` local sshd nodes under `directory`, for the demo."""
    from edeliver.adapters.node.local_fleet import LocalFleet

    return LocalFleet(directory, size)


def status_file_health() -> str:
    """A health check that boots no VM: the status file examples/hello writes once it is up."""
    from edeliver.adapters.node.node_scripts import STATUS_FILE_HEALTH

    return STATUS_FILE_HEALTH


# The Runtime's real factories, each importing its adapter when a command first calls it.
def load_config(project: Path) -> Config:
    from edeliver.adapters.local.config_file import load_config

    return load_config(project)


def open_deployments(project: Path) -> Deployments:
    from edeliver.adapters.events.event_store import open_deployments

    return open_deployments(project)


def nothing_recorded(project: Path) -> bool:
    from edeliver.adapters.events.event_store import nothing_recorded

    return nothing_recorded(project)
