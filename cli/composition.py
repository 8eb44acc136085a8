"""The composition root: the one place that wires real adapters to the core.

Every command runs against one `Runtime`, built once per command line by the root callback (or
by a test, with fakes behind the same ports). It is immutable; what costs to open is opened on
first use only: the config file and the task files (read once, cached), the event store (a fresh
one per use, closed by whoever asked: read-only commands create none), the store and the node
shells (built per use, since SSH shells belong to the event loop of one run). No other cli
module imports `edeliver.adapters` (an import contract in pyproject.toml).

Each function imports the adapters it wires when it is called, and the cli modules import this
module only inside their commands, so that a command pays only for what it uses: `--help` loads
none of it, `plan` reads the SSH config but loads no store, build or event-store adapter, and
boto3 is imported only for an S3 store.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, cast

from rich.console import Console

from edeliver.adapters import settings
from edeliver.adapters.local.clock import SystemClock
from edeliver.adapters.settings import Store, release_store
from edeliver.cli.output import Output
from edeliver.core.domain.app import AppNotSet, app_name
from edeliver.core.domain.auto_version import version_suffix
from edeliver.core.domain.config import Config, NodeConfig
from edeliver.core.domain.errors import UsageError
from edeliver.core.domain.model import Artifact
from edeliver.core.domain.redaction import Redactor
from edeliver.core.domain.runtime_env import secret_variables
from edeliver.core.ports import (
    Builder,
    Clock,
    CommandHost,
    DirectStore,
    NodeShell,
    NodeShells,
)

if TYPE_CHECKING:
    from edeliver.adapters.build.mix_build import BuildStages
    from edeliver.adapters.local import project_init
    from edeliver.adapters.local.config_file import CONFIG_FILE
    from edeliver.adapters.node.local_fleet import LocalFleet
    from edeliver.adapters.node.node_control import AsyncsshNodeControl as NodeControl
    from edeliver.adapters.node.ssh import AsyncsshNodeShells
    from edeliver.adapters.node.transfer import Delivery
    from edeliver.core.domain.legacy import Migration
    from edeliver.core.usecases.journal import Listener, SaveEvents
    from edeliver.core.usecases.loaded_task import LoadedTask
    from edeliver.core.usecases.service import Deployments
    from edeliver.core.usecases.services import Services

# For the commands that hand their work to one adapter as it is (init, migrate-config), read
# through `__getattr__`, and for tests and benches (the configured store); LocalFleet,
# NodeControl: types only, for the demo and the operations.
__all__ = [
    "CONFIG_FILE",
    "LocalFleet",
    "NodeControl",
    "Store",
    "project_init",
    "release_store",
]


def __getattr__(name: str) -> object:
    """CONFIG_FILE and project_init, imported when first asked for: the config file's module
    reads the SSH config (asyncssh's parser), which `history`, say, never needs."""
    if name == "CONFIG_FILE":
        from edeliver.adapters.local.config_file import CONFIG_FILE

        return CONFIG_FILE
    if name == "project_init":
        from edeliver.adapters.local import project_init

        return project_init
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def who() -> str:
    """The deployer as user@host, recorded with every deployment and lock."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


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


@dataclass(frozen=True)
class Runtime:
    """Everything one command runs against (see the module's docstring); tests replace the
    factories with fakes."""

    project: Path = field(default_factory=Path.cwd)
    clock: Clock = field(default_factory=SystemClock)
    user: str = field(default_factory=who)  # who deploys, for the locks and the history
    load_config: Callable[[Path], Config] = load_config
    adapters: Callable[[Path, Config], Adapters] = real_adapters
    open_events: Callable[[Path], Deployments] = open_deployments
    nothing_recorded: Callable[[Path], bool] = nothing_recorded
    controls: Callable[[Path, Config], OpenNodeControl] = node_controls
    # How events reach the store; tests wrap it to simulate a deployer that dies mid-write.
    save_events: Callable[[Deployments], SaveEvents] | None = None
    console: Console | None = None
    output: Output = field(default_factory=Output)  # -v / -q, from the root callback

    @cached_property
    def config(self) -> Config:
        config = self.load_config(self.project)
        if self.output.verbose:  # -v / -vv show steps and scripts: mask what the config
            # names as secrets too (`from_env`, the cookie's, `redact`), not only secret names
            self.output.redact = deployer_secrets(config)
        return config

    @cached_property
    def tasks(self) -> list[LoadedTask]:
        return project_tasks(self.project)

    @cached_property
    def _console(self) -> Console:
        # Created per command, never at import time, so test runners capture it.
        return self.console or Console(highlight=False, width=output_width())

    def out(self) -> Console:
        return self._console

    def deployments(self) -> Deployments:
        """The event store, opened for one use: the caller closes it."""
        return self.open_events(self.project)

    def recorded_deployments(self) -> Deployments | None:
        """The deployments for a command that only reads them; None when nothing was ever
        recorded, so that reading creates no store (nor a project directory given by mistake)."""
        if not self.project.is_dir():
            raise UsageError(f"{self.project}: no such project directory (-C, EDELIVER_PROJECT)")
        if self.nothing_recorded(self.project):
            return None
        return self.deployments()

    def store(self) -> Store:
        """The store alone: with the real adapters, no node connection is set up (nor its
        modules imported) for it, so `plan` stays light."""
        if self.adapters is real_adapters:
            return settings.release_store(self.project, self.config)
        return self.adapters(self.project, self.config).store

    def node_shells(self, mode: str = "release") -> NodeShells:
        """Just the connections to nodes, for commands that record nothing."""
        from edeliver.core.usecases.services import shells_for

        adapters = self.adapters(self.project, self.config)
        return shells_for(mode, adapters.shells, adapters.upgrade_shells)

    def node_controls(self) -> OpenNodeControl:
        """Opens a node's connection that operates the app's release (start, stop, eval...)."""
        return self.controls(self.project, self.config)

    def services(self, listener: Listener | None, tasks: Sequence[LoadedTask] = ()) -> Services:
        """The ports a rollout runs on, running `tasks`: local ones from the project directory,
        legacy `__remote` checking host keys against the same known_hosts as every connection."""
        from edeliver.adapters.events.event_store import store_patience
        from edeliver.adapters.local.local_commands import LocalCommandHost
        from edeliver.core.usecases.services import Services

        adapters = self.adapters(self.project, self.config)
        deployments = self.deployments()
        task_env = settings.ssh_task_env(self.project, self.config)
        return Services(
            deployments=deployments,
            shells=adapters.shells,
            store=adapters.store,
            clock=self.clock,
            user=self.user,
            listener=listener,
            save=self.save_events(deployments) if self.save_events else None,
            tasks=tuple(tasks),
            local=LocalCommandHost(self.project),
            task_env=task_env,
            redact=deployer_secrets(self.config).including(task_env),
            upgrade_shells=adapters.upgrade_shells,
            patience=store_patience(os.environ),
            warn=lambda line: self.output.note(f"edeliver: {line}"),
            deployer_env=dict(os.environ),
        )

    def node_addresses(self, nodes: Sequence[NodeConfig]) -> dict[str, str]:
        return settings.node_addresses(self.project, self.config, nodes)

    def builder(self, env: dict[str, str] | None, store: Store) -> Builder[Path]:
        """The configured build strategy: here, on a build host over SSH, or in a container,
        each running the project's build-stage tasks. A build host puts its release straight
        into an S3 store (a presigned PUT), so the tarball never passes through this machine."""
        from edeliver.adapters.build.build_scripts import VERSION_SUFFIX, MixTarget
        from edeliver.adapters.build.container_build import ContainerBuilder
        from edeliver.adapters.build.git_source import version_facts
        from edeliver.adapters.build.mix_build import MixLocalBuilder
        from edeliver.adapters.build.remote_build import SshBuildHost

        config, project, app = self.config, self.project, app_name(self.config)
        build = config.build
        target = MixTarget(build.mix_env, build.release)
        if build.auto_version:
            facts = version_facts(project, build.revision, self.clock.now())
            env = {**(env or {}), VERSION_SUFFIX: version_suffix(build.auto_version, facts)}
        at_stage = self._build_stages(env)
        address = settings.build_host(config)
        if address is not None:
            # Only an S3 store takes a presigned PUT (importing its class would need boto3).
            direct = cast(DirectStore, store) if config.store.kind == "s3" else None
            shells = settings.plain_shells(project, config)
            return SshBuildHost(
                project, app, address, shells, revision=build.revision, env=env,
                warn=self._warn_of_build, direct=direct, at_stage=at_stage, target=target,
            )  # fmt: skip
        if build.strategy == "docker":
            return ContainerBuilder(
                project, app, build.image or "", cli=build.cli,
                global_options=build.global_options, run_options=build.run_options,
                revision=build.revision, env=env, warn=self._warn_of_build, at_stage=at_stage,
                target=target,
            )  # fmt: skip
        return MixLocalBuilder(project, app, env=env, at_stage=at_stage, target=target)

    def _build_stages(self, env: dict[str, str] | None) -> BuildStages:
        """Runs a build stage's tasks. Legacy hooks reach the build host as 1.x's did: HOSTS,
        BUILD_AT (the per-build directory, where the sources are) and `__remote` pointing
        at it."""
        from edeliver.adapters.local.local_commands import LocalCommandHost
        from edeliver.core.usecases.task_runs import legacy_build_env, run_build_stage

        tasks, here, app = self.tasks, LocalCommandHost(self.project), app_name(self.config)
        remote, secrets = settings.build_host(self.config), deployer_secrets(self.config)

        async def at_stage(stage: str, host: CommandHost, mix: CommandHost | None = None) -> None:
            directory = getattr(host, "path", None)
            legacy = legacy_build_env(remote, directory) if remote and directory else {}
            legacy |= settings.ssh_task_env(self.project, self.config) if legacy else {}
            # MIX_ENV: an Elixir task `where: :build` runs by `mix run` in the built project.
            build_env = {"MIX_ENV": self.config.build.mix_env, **(env or {}), **legacy}
            await run_build_stage(
                tasks, stage, app, host, here, build_env, self.output.note, secrets, mix
            )

        return at_stage

    def _warn_of_build(self, text: str) -> None:
        """A build's warnings, beside its tasks' lines (-q keeps them back)."""
        self.output.note(f"edeliver: warning: {text}")

    def build_upgrade(self, old: Artifact, new: Artifact) -> tuple[Path, Artifact, list[str]]:
        """The hot-upgrade package OLD -> NEW built here (both at paths on this machine): its
        tarball, its artifact and what the generator noted."""
        from edeliver.adapters.build.mix_build import BUILD_DIR
        from edeliver.adapters.build.upgrade_build import build_upgrade

        work = self.project / BUILD_DIR / "upgrades"
        built = build_upgrade(old, new, work, self.project)
        return built.tarball, built.artifact, list(built.notes)

    async def host_key(self, node: NodeConfig) -> tuple[str, str, str]:
        """The first unpinned host key on the node's route (a jump host's first): whose it is,
        as a known_hosts line and its fingerprint, for the user to confirm."""
        from edeliver.adapters.node.ssh_connect import fetch_host_key

        files = settings.ssh_config_files(self.project, self.config)
        known_hosts = settings.known_hosts_file(self.project, self.config)
        return await fetch_host_key(node, files, known_hosts)

    def pinning_file(self) -> Path:
        return settings.pinning_file(self.project, self.config)

    def pin_host_key(self, line: str) -> None:
        from edeliver.adapters.node.ssh import pin_host_key

        pin_host_key(self.pinning_file(), line)


def output_width() -> int | None:
    """The terminal's width on a terminal (None: rich asks it), else COLUMNS if set, else wide:
    pipes and CI logs get whole lines, not tables cut to rich's default of 80 columns."""
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() else _PIPE_WIDTH


_PIPE_WIDTH = 250
