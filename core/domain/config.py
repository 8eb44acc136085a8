"""The settings of `.deliver/edeliver.toml`, frozen (DESIGN §2): nodes, environments and their
policies, the store, the build, how releases reach the nodes.

`config_parser.py` reads the file into these; everything else only reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from edeliver.core.domain.config_keys import (
    FALLBACKS,
    MODES,
    STRATEGIES,
    Fallback,
    Mode,
    Strategy,
    TransferMode,
    did_you_mean,
)
from edeliver.core.domain.errors import NotFoundError
from edeliver.core.domain.runtime_settings import FromEnv, Settings

__all__ = ["FALLBACKS", "MODES", "STRATEGIES", "Fallback", "Mode", "Strategy"]
StoreKind = Literal["local", "ssh", "s3"]


@dataclass(frozen=True)
class Policy:
    """How an environment rolls out and what it does when a node fails (DESIGN §4)."""

    strategy: Strategy = "one_for_all"
    fallback: Fallback = "rollback"
    max_parallel: int | None = None
    max_failures: int | None = None


@dataclass(frozen=True)
class NodeConfig:
    name: str
    host: str
    path: str
    port: int | None = None  # None: the ssh config's Port for the host, else 22
    user: str | None = None  # None: the ssh config's User for the host, else the local user
    labels: tuple[str, ...] = ()
    identity_file: str | None = None
    env: Settings = ()  # the app's runtime settings on this node, over its environment's
    node_name: str | None = None  # RELEASE_NODE; None: the release's default

    @property
    def release_node(self) -> str | None:
        """The node name given, by `node_name` or as RELEASE_NODE in the node's env."""
        return self.node_name or next(
            (v for name, v in self.env if name == "RELEASE_NODE" and isinstance(v, str)), None
        )

    @property
    def address(self) -> str:
        """The address as written in the config: `user@` and `:port` only where given."""
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{user}{self.host}{port}"


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str
    nodes: tuple[str, ...]
    mode: Mode = "release"
    policy: Policy = Policy()
    step_timeout: float = 300.0
    keep_releases: int = 5
    verify_timeout: float | None = None  # None: derived from step_timeout
    command_timeout: float | None = None  # None: derived from step_timeout
    env: Settings = ()  # the app's runtime settings on every node of the environment
    cookie: FromEnv | None = None  # None: generated once, kept on the nodes
    migrate: str | None = None  # `edeliver migrate`: an Elixir function, "MyApp.Release.migrate"

    @property
    def verify_seconds(self) -> float:
        """How long a new release may take to boot and pass its health check: by default most
        of a step, leaving the rest to fetch the logs that say why it did not come up."""
        return self.verify_timeout or VERIFY_SHARE * self.step_timeout

    @property
    def command_seconds(self) -> float:
        """How long one node script may run: by default a step, which bounds it anyway."""
        return self.command_timeout or self.step_timeout


VERIFY_SHARE = 0.8


@dataclass(frozen=True)
class StoreConfig:
    """Where releases live; the S3 settings name no secret (credentials come from AWS's chain)."""

    url: str
    kind: StoreKind
    endpoint_url: str | None = None  # s3: another S3-compatible endpoint than AWS's
    region: str | None = None  # s3
    profile: str | None = None  # s3: an AWS profile name, whose keys stay in ~/.aws
    checksums: str = "when_supported"  # s3: boto3's request/response checksum setting
    port: int = 22  # ssh
    identity_file: str | None = None  # ssh: the deployer's key for the store host


@dataclass(frozen=True)
class TransferConfig:
    """How a release reaches the nodes: uploaded by the deployer, or fetched by each node."""

    mode: TransferMode = "push"
    url_expiry: int = 900  # s3 pull: seconds a presigned URL stays valid
    node_identity_file: str | None = None  # ssh pull: the nodes' key for the store host


@dataclass(frozen=True)
class CommandsConfig:
    """Shell commands run from a release's root on the node, `{app}` filled in; None = default."""

    start: str | None = None
    stop: str | None = None
    health: str | None = None


@dataclass(frozen=True)
class BuildConfig:
    """Where releases are built: here, on a build host over SSH, or in a container."""

    strategy: str = "local"
    revision: str = "HEAD"  # remote, docker: the git revision whose sources are built
    host: str | None = None  # remote: user@host:/path of per-build directories
    port: int | None = None  # remote; None: the ssh config's Port for the host, else 22
    identity_file: str | None = None  # remote
    image: str | None = None  # docker
    cli: str = "docker"  # docker: docker | podman
    global_options: tuple[str, ...] = ()  # docker: options before `run` (podman --runtime runc)
    run_options: tuple[str, ...] = ()  # docker: options of `run` (--ulimit ...)
    auto_version: tuple[str, ...] = ()  # build metadata appended to the mix version
    mix_env: str = "prod"  # every strategy: the MIX_ENV of deps.get, compile and release
    release: str = ""  # every strategy: which of mix.exs's releases ("": mix's default)


@dataclass(frozen=True)
class Config:
    file: str
    app: str | None
    store: StoreConfig
    build: BuildConfig
    nodes: Mapping[str, NodeConfig]
    environments: Mapping[str, EnvironmentConfig]
    known_hosts: str | None = None
    commands: CommandsConfig = CommandsConfig()
    transfer: TransferConfig = TransferConfig()
    ssh_config: str | None = None  # an OpenSSH client config file; None: ~/.ssh/config
    redact: tuple[str, ...] = ()  # deployer's variables whose values are never shown

    def environment(self, name: str) -> EnvironmentConfig:
        """The environment called `name`, or an error listing the ones there are."""
        if name not in self.environments:
            known = ", ".join(sorted(self.environments)) or "none"
            hint = did_you_mean(name, list(self.environments))
            raise NotFoundError(f"{self.file}: no environment {name!r} (defined: {known}){hint}")
        return self.environments[name]

    def nodes_of(self, environment: str) -> tuple[NodeConfig, ...]:
        return tuple(self.nodes[n] for n in self.environment(environment).nodes)
