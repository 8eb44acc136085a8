"""What the config's settings mean to the adapters: the SSH files every connection reads, each
node's limits, the release commands, the remote build's host. Pure translation, read by the
composition root (`edeliver.cli.composition`) when it builds the adapters."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edeliver.adapters.ssh import NodeTimeouts, ReleaseCommands
from edeliver.adapters.ssh_config import config_files, resolved_addresses
from edeliver.core.config import Config, NodeConfig, ssh_store_address


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
    return config_files(config.ssh_config, project)


def node_addresses(project: Path, config: Config, nodes: Sequence[NodeConfig]) -> dict[str, str]:
    """Each node's address as SSH resolves it (ssh config applied, `via` its jump hosts)."""
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
    given = {k: v for k, v in vars(config.commands).items() if v is not None}
    return ReleaseCommands(**given)


def keep_releases(config: Config) -> int:
    """Nodes can serve several environments: keep as many releases as the most careful asks."""
    return max((env.keep_releases for env in config.environments.values()), default=5)


def node_timeouts(config: Config) -> dict[str, NodeTimeouts]:
    """Each node's script and verify limits from its environment; a node serving several
    environments gets the longest, like keep_releases (a limit must never cut a valid run)."""
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
