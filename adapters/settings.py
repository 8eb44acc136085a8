"""What the config's settings mean to the adapters: the configured store, how releases reach
the nodes, the SSH files every connection reads, each node's limits, the release commands, the
remote build's host. Read by the composition root (`edeliver.cli.composition`) alone, when it
builds the adapters.

Each function imports the adapters it builds when it is called, so that a command pays only for
what it uses: `plan` resolves the nodes' addresses without loading SSH, a store or boto3."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, cast

from edeliver.core import ports
from edeliver.core.domain.config import Config, NodeConfig
from edeliver.core.domain.config_delivery import ssh_store_address

if TYPE_CHECKING:
    from edeliver.adapters.node.ssh import AsyncsshNodeShells, NodeTimeouts, ReleaseCommands
    from edeliver.adapters.node.transfer import Delivery

Store: TypeAlias = ports.Store[Path]  # any store adapter: every store port, files as paths


def known_hosts_file(project: Path, config: Config) -> str | None:
    """The configured known_hosts file, relative to the project; None: SSH's own default."""
    if not config.known_hosts:
        return None
    path = Path(config.known_hosts).expanduser()
    return str(path if path.is_absolute() else project / path)


def pinning_file(project: Path, config: Config) -> Path:
    """Where new host keys are pinned: the configured known_hosts, else the user's own."""
    configured = known_hosts_file(project, config)
    return Path(configured) if configured else Path("~/.ssh/known_hosts").expanduser()


def ssh_config_files(project: Path, config: Config) -> list[str]:
    """The OpenSSH client config files every connection reads: the toml's, else ~/.ssh/config."""
    from edeliver.adapters.local.ssh_config import config_files

    return config_files(config.ssh_config, project)


def node_addresses(project: Path, config: Config, nodes: Sequence[NodeConfig]) -> dict[str, str]:
    """Each node's address as SSH resolves it (ssh config applied, `via` its jump hosts)."""
    from edeliver.adapters.local.ssh_config import resolved_addresses

    return resolved_addresses(nodes, ssh_config_files(project, config))


def ssh_task_env(project: Path, config: Config) -> dict[str, str]:
    """What legacy hooks' OpenSSH needs to check host keys and read the ssh config like us."""
    known_hosts, files = known_hosts_file(project, config), ssh_config_files(project, config)
    return {
        **({"EDELIVER_KNOWN_HOSTS": known_hosts} if known_hosts else {}),
        **({"EDELIVER_SSH_CONFIG": files[0]} if files else {}),
    }


def release_commands(config: Config) -> ReleaseCommands:
    """The configured start / stop / health commands over the defaults for a mix release."""
    from edeliver.adapters.node.ssh import ReleaseCommands

    given = {k: v for k, v in vars(config.commands).items() if v is not None}
    return ReleaseCommands(**given)


def keep_releases(config: Config) -> int:
    """Nodes can serve several environments: keep as many releases as the most careful asks."""
    return max((env.keep_releases for env in config.environments.values()), default=5)


def node_timeouts(config: Config) -> dict[str, NodeTimeouts]:
    """Each node's script and verify limits from its environment; a node serving several
    environments gets the longest, like keep_releases (a limit must never cut a valid run)."""
    from edeliver.adapters.node.ssh import NodeTimeouts

    limits: dict[str, NodeTimeouts] = {}
    for env in config.environments.values():
        for name in env.nodes:
            known = limits.get(name, NodeTimeouts(0.0, 0.0))
            limits[name] = NodeTimeouts(
                max(known.command, env.command_seconds), max(known.verify, env.verify_seconds)
            )
    return limits


def build_host(config: Config) -> NodeConfig | None:
    """The remote build's host as a node to connect to; None for other build strategies."""
    build = config.build
    if build.strategy != "remote":
        return None
    user, host, path = ssh_store_address(build.host or "")
    return NodeConfig("build", host, path, build.port, user, (), build.identity_file)


# Verified local copies of remote stores' releases, for pushes: one download, many uploads.
STORE_CACHE = Path(".deliver/cache/store")


def release_store(project: Path, config: Config) -> Store:
    """The configured store: a local directory, S3, or a store host over SSH."""
    from edeliver.adapters.local.extras import extra_needed

    store = config.store
    cache = project / STORE_CACHE
    if store.kind == "s3":
        with extra_needed("s3", f"{config.file}: store.url: an S3 store"):
            from edeliver.adapters.store.s3_store import S3ReleaseStore
        bucket, _, prefix = store.url.removeprefix("s3://").partition("/")
        return S3ReleaseStore(
            bucket, prefix, cache,
            endpoint_url=store.endpoint_url, region=store.region,
            profile=store.profile, checksums=store.checksums,
            url_expiry=config.transfer.url_expiry,
        )  # fmt: skip
    if store.kind == "ssh":
        from edeliver.adapters.store.ssh_store import SshReleaseStore

        user, host, path = ssh_store_address(store.url)
        address = NodeConfig("store", host, path, store.port, user, (), store.identity_file)
        identity = config.transfer.node_identity_file
        return SshReleaseStore(
            address, cache, plain_shells(project, config), node_identity_file=identity
        )
    from edeliver.adapters.store.local_store import LocalDirectoryStore

    root = Path(store.url)
    return LocalDirectoryStore(root if root.is_absolute() else project / root)


def plain_shells(project: Path, config: Config) -> AsyncsshNodeShells:
    """Connections that only run commands (a store host, a build host), not releases."""
    from edeliver.adapters.node.ssh import AsyncsshNodeShells

    return AsyncsshNodeShells(
        known_hosts_file(project, config),
        ssh_config=ssh_config_files(project, config),
    )


def delivery(config: Config, store: Store) -> Delivery:
    """How releases reach the nodes: a local store's files pushed as they are, or per config."""
    from edeliver.adapters.node.transfer import FromLocation, Pull, Push

    if config.store.kind == "local":
        return FromLocation()
    fetching = cast(ports.FetchingStore[Path], store)
    return Pull(fetching) if config.transfer.mode == "pull" else Push(fetching)
