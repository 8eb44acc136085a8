"""The composition root: the one place that wires real adapters to the core.

Each function imports the adapters it wires when it is called, so that a command pays only
for what it uses: `plan` reads the SSH config but loads no store, build or event-store adapter,
and boto3 is imported only for an S3 store.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from edeliver.adapters.clock import SystemClock
from edeliver.core.config import Config, NodeConfig, ssh_store_address
from edeliver.core.errors import UsageError
from edeliver.core.model import Artifact
from edeliver.core.ports import Clock, NodeShell, NodeShells, ReleaseArchive
from edeliver.core.redaction import Redactor
from edeliver.core.runtime_env import secret_variables

if TYPE_CHECKING:
    from edeliver.adapters.mix_build import BuildStages, Built
    from edeliver.adapters.node_control import AsyncsshNodeControl as NodeControl
    from edeliver.adapters.remote_build import DirectStore
    from edeliver.adapters.ssh import AsyncsshNodeShells, NodeTimeouts, ReleaseCommands
    from edeliver.adapters.transfer import Delivery, FetchingStore
    from edeliver.core.loaded_task import LoadedTask
    from edeliver.core.orchestrator import Listener
    from edeliver.core.rollout import Services
    from edeliver.core.service import Deployments

# Verified local copies of remote stores' releases, for pushes: one download, many uploads.
STORE_CACHE = Path(".deliver/cache/store")


def who() -> str:
    """The deployer as user@host, recorded with every deployment and lock."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


class Builder(Protocol):
    def build(self) -> Built: ...


class Store(ReleaseArchive, Protocol):
    """What the commands need of any store adapter: the port, plus putting, fetching and the
    hot-upgrade packages (every store keeps them below the version they upgrade to)."""

    def put(
        self, tarball: Path, artifact: Artifact, extra: dict[str, Any] | None = None
    ) -> Artifact: ...

    async def local_file(self, artifact: Artifact) -> Path: ...

    async def upgrade(self, app: str, from_version: str, version: str) -> Artifact | None: ...


def release_store(project: Path, config: Config) -> Store:
    """The configured store: a local directory, S3, or a store host over SSH."""
    from edeliver.adapters.extras import extra_needed

    settings = config.store
    cache = project / STORE_CACHE
    if settings.kind == "s3":
        with extra_needed("s3", f"{config.file}: store.url: an S3 store"):
            from edeliver.adapters.s3_store import S3ReleaseStore
        bucket, _, prefix = settings.url.removeprefix("s3://").partition("/")
        return S3ReleaseStore(
            bucket, prefix, cache,
            endpoint_url=settings.endpoint_url, region=settings.region,
            profile=settings.profile, checksums=settings.checksums,
            url_expiry=config.transfer.url_expiry,
        )  # fmt: skip
    if settings.kind == "ssh":
        from edeliver.adapters.ssh import AsyncsshNodeShells
        from edeliver.adapters.ssh_store import SshReleaseStore

        user, host, path = ssh_store_address(settings.url)
        address = NodeConfig("store", host, path, settings.port, user, (), settings.identity_file)
        shells = AsyncsshNodeShells(
            known_hosts_file(project, config), ssh_config=ssh_config_files(project, config)
        )
        identity = config.transfer.node_identity_file
        return SshReleaseStore(address, cache, shells, node_identity_file=identity)
    from edeliver.adapters.local_store import LocalDirectoryStore

    root = Path(settings.url)
    return LocalDirectoryStore(root if root.is_absolute() else project / root)


def builder(
    project: Path,
    config: Config,
    app: str,
    env: Mapping[str, str] | None = None,
    warn: Callable[[str], None] = lambda _: None,
    store: Store | None = None,
    at_stage: BuildStages | None = None,
) -> Builder:
    """The configured build strategy: here, on a build host over SSH, or in a container.

    A build host puts its release straight into an S3 store (a presigned PUT), so the tarball
    never passes through this machine.
    """
    from edeliver.adapters.build_scripts import VERSION_SUFFIX, MixTarget
    from edeliver.adapters.container_build import ContainerBuilder
    from edeliver.adapters.git_source import version_facts
    from edeliver.adapters.mix_build import MixLocalBuilder
    from edeliver.adapters.remote_build import SshBuildHost
    from edeliver.adapters.ssh import AsyncsshNodeShells
    from edeliver.core.auto_version import version_suffix

    build = config.build
    target = MixTarget(build.mix_env, build.release)
    if build.auto_version:
        facts = version_facts(project, build.revision, SystemClock().now())
        env = {**(env or {}), VERSION_SUFFIX: version_suffix(build.auto_version, facts)}
    address = build_host(config)
    if address is not None:
        shells = AsyncsshNodeShells(
            known_hosts_file(project, config), ssh_config=ssh_config_files(project, config)
        )
        direct = cast("DirectStore", store) if config.store.kind == "s3" else None
        return SshBuildHost(
            project, app, address, shells, revision=build.revision, env=env, warn=warn,
            direct=direct, at_stage=at_stage, target=target,
        )  # fmt: skip
    if build.strategy == "docker":
        return ContainerBuilder(
            project, app, build.image or "", cli=build.cli,
            global_options=build.global_options, run_options=build.run_options,
            revision=build.revision, env=env, warn=warn, at_stage=at_stage, target=target,
        )  # fmt: skip
    return MixLocalBuilder(project, app, env=env, at_stage=at_stage, target=target)


def build_host(config: Config) -> NodeConfig | None:
    """The remote build's host as a node to connect to; None for other build strategies."""
    build = config.build
    if build.strategy != "remote":
        return None
    user, host, path = ssh_store_address(build.host or "")
    return NodeConfig("build", host, path, build.port, user, (), build.identity_file)


def delivery(config: Config, store: Store) -> Delivery:
    """How releases reach the nodes: a local store's files pushed as they are, or per config."""
    from edeliver.adapters.transfer import FromLocation, Pull, Push

    if config.store.kind == "local":
        return FromLocation()
    fetching = cast("FetchingStore", store)
    return Pull(fetching) if config.transfer.mode == "pull" else Push(fetching)


def release_commands(config: Config) -> ReleaseCommands:
    """The configured start / stop / health commands over the defaults for a mix release."""
    from edeliver.adapters.ssh import ReleaseCommands

    given = {k: v for k, v in vars(config.commands).items() if v is not None}
    return ReleaseCommands(**given)


def _keep_releases(config: Config) -> int:
    """Nodes can serve several environments: keep as many releases as the most careful asks."""
    return max((env.keep_releases for env in config.environments.values()), default=5)


def node_timeouts(config: Config) -> dict[str, NodeTimeouts]:
    """Each node's script and verify limits from its environment; a node serving several
    environments gets the longest, like keep_releases (a limit must never cut a valid run)."""
    from edeliver.adapters.ssh import NodeTimeouts

    limits: dict[str, NodeTimeouts] = {}
    for env in config.environments.values():
        for name in env.nodes:
            known = limits.get(name, NodeTimeouts(0.0, 0.0))
            limits[name] = NodeTimeouts(
                max(known.command, env.command_seconds), max(known.verify, env.verify_seconds)
            )
    return limits


def known_hosts_file(project: Path, config: Config) -> str | None:
    """The configured known_hosts file, relative to the project; None: SSH's own default."""
    if not config.known_hosts:
        return None
    path = Path(config.known_hosts).expanduser()
    return str(path if path.is_absolute() else project / path)


def ssh_config_files(project: Path, config: Config) -> list[str]:
    """The OpenSSH client config files every connection reads: the toml's, else ~/.ssh/config."""
    from edeliver.adapters.ssh_config import config_files

    return config_files(config.ssh_config, project)


def node_addresses(project: Path, config: Config, nodes: Sequence[NodeConfig]) -> dict[str, str]:
    """Each node's address as SSH resolves it (ssh config applied, `via` its jump hosts)."""
    from edeliver.adapters.ssh_config import resolved_addresses

    return resolved_addresses(nodes, ssh_config_files(project, config))


def project_tasks(project: Path) -> list[LoadedTask]:
    """The tasks under .deliver/tasks/ and a legacy .deliver/config's hooks; an unusable task
    file raises here, before anything connects to a node."""
    from edeliver.adapters.legacy_config import legacy_hook_tasks
    from edeliver.adapters.task_files import discover

    return [*discover(project), *legacy_hook_tasks(project)]


def with_tasks(
    services: Services, project: Path, config: Config, tasks: list[LoadedTask]
) -> Services:
    """Services that run `tasks`: local ones from the project dir, legacy `__remote` checking
    host keys against the same known_hosts file as every other connection."""
    from edeliver.adapters.local_commands import LocalCommandHost

    services.tasks, services.local = tasks, LocalCommandHost(project)
    services.task_env = ssh_task_env(project, config)
    services.redact = deployer_secrets(config).including(services.task_env)
    return services


def deployer_secrets(config: Config | None = None) -> Redactor:
    """What output kept in events or printed must not show: the secrets of this environment,
    which local tasks inherit and node tasks may be handed, and the values of the variables
    the config names as secrets (`from_env`, the cookies', `redact`)."""
    named = secret_variables(config) if config is not None else set()
    return Redactor.of_environment(os.environ, also=named)


def ssh_task_env(project: Path, config: Config) -> dict[str, str]:
    """What legacy hooks' OpenSSH needs to check host keys and read the ssh config like us."""
    known_hosts, files = known_hosts_file(project, config), ssh_config_files(project, config)
    return {
        **({"EDELIVER_KNOWN_HOSTS": known_hosts} if known_hosts else {}),
        **({"EDELIVER_SSH_CONFIG": files[0]} if files else {}),
    }


class _NoHotUpgrades:
    """Upgrade-mode shells without an app name to find the packages by: a clear refusal."""

    def __init__(self, config: Config) -> None:
        self.why = f"{config.file}: app: not set and no mix.exs project name found"

    async def open(self, node: NodeConfig) -> NodeShell:
        raise UsageError(self.why)


def _upgrade_shells(shells: AsyncsshNodeShells, store: Store, config: Config) -> NodeShells:
    """The packages reach the nodes like releases do (the shells' delivery: pushed from the
    local store's files or a verified local copy, or pulled by the nodes from the store)."""
    from edeliver.adapters.hot_upgrade import HotUpgradeNodeShells

    if config.app:
        return HotUpgradeNodeShells(shells, store, config.app)
    return _NoHotUpgrades(config)


def node_shells(
    project: Path, config: Config, deliver: Delivery | None = None
) -> AsyncsshNodeShells:
    """Connections to the configured nodes: known hosts, ssh config, the release's commands and
    each node's limits and runtime settings; `deliver`: how releases reach them (deployments)."""
    from edeliver.adapters.runtime_env_files import RuntimeEnvFiles
    from edeliver.adapters.ssh import AsyncsshNodeShells

    return AsyncsshNodeShells(
        known_hosts=known_hosts_file(project, config),
        ssh_config=ssh_config_files(project, config),
        commands=release_commands(config),
        keep_releases=_keep_releases(config),
        delivery=deliver,
        node_timeouts=node_timeouts(config),
        runtime_env=RuntimeEnvFiles(config, os.environ),
    )


OpenNodeControl = Callable[[NodeConfig], Awaitable["NodeControl"]]  # operates one node's release


def node_controls(project: Path, config: Config) -> OpenNodeControl:
    """Opens a connection that operates the app's release on a node (start, stop, eval...)."""
    from edeliver.adapters.node_control import open_control

    if not config.app:
        raise UsageError(f"{config.file}: app: not set and no mix.exs project name found")
    shells, app = node_shells(project, config), config.app
    return lambda node: open_control(shells, node, app)


def wall_clock() -> Clock:
    return SystemClock()


def real_services(project: Path, config: Config, listener: Listener | None = None) -> Services:
    """Services on SSH, the configured store, the configured event store and the wall clock."""
    from edeliver.adapters.event_store import open_deployments

    return _services(project, config, listener, open_deployments(project))


def read_only_services(project: Path, config: Config) -> Services:
    """Services for a command that records nothing (status, plan, releases): the event store
    is not opened, so no database is created or written."""
    from edeliver.core.service import Deployments

    return _services(project, config, None, Deployments())


def _services(
    project: Path, config: Config, listener: Listener | None, deployments: Deployments
) -> Services:
    from edeliver.adapters.event_store import store_patience
    from edeliver.core.rollout import Services

    patience = store_patience(os.environ)
    store = release_store(project, config)
    shells = node_shells(project, config, delivery(config, store))
    return Services(
        deployments=deployments,
        shells=shells,
        store=store,
        clock=SystemClock(),
        user=who(),
        listener=listener,
        upgrade_shells=_upgrade_shells(shells, store, config),
        redact=deployer_secrets(config),
        patience=patience,
        warn=_to_stderr,
        deployer_env=dict(os.environ),
    )


def _to_stderr(line: str) -> None:
    print(f"edeliver: {line}", file=sys.stderr, flush=True)
