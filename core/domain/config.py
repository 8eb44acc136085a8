"""`.deliver/edeliver.toml`: parsed and validated into frozen settings (DESIGN §2).

Parsing is pure: it takes the file's text and the name to blame in errors. Every error names the
file, the key path and what was expected, and unknown keys are errors, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Literal, cast

from edeliver.core.domain.auto_version import PARTS as AUTO_VERSION_PARTS
from edeliver.core.domain.config_keys import (
    BUILD_STRATEGIES,
    CONTAINER_CLIS,
    FALLBACKS,
    FUNCTION_PATTERN,
    MIX_NAME_PATTERN,
    MODES,
    NAME_PATTERN,
    S3_CHECKSUMS,
    STRATEGIES,
    TOP,
    TRANSFER_MODES,
    Fallback,
    Mode,
    Strategy,
    TransferMode,
    did_you_mean,
)
from edeliver.core.domain.config_table import Table, collect
from edeliver.core.domain.errors import ConfigError, ConfigErrors, NotFoundError
from edeliver.core.domain.runtime_settings import (
    ENV_NAME,
    FromEnv,
    Settings,
    check_node_name,
    check_unique_node_names,
    parse_cookie,
    parse_settings,
)

__all__ = ["FALLBACKS", "MODES", "STRATEGIES", "Fallback", "Mode", "Strategy", "parse_config"]
StoreKind = Literal["local", "ssh", "s3"]

DEFAULT_STORE = ".deliver/releases"
_NAME = re.compile(NAME_PATTERN)
_SSH_URL = re.compile(r"^(?P<user>[^@\s/:]+)@(?P<host>[^:\s/@]+):(?P<path>\S.*)$")
# A host name, an IPv4 address or a bare IPv6 address (with a zone): nothing a shell, ssh's
# option parser or `user@host` splitting could read another way.
_HOST = re.compile(
    r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"  # a name, an ssh Host alias, IPv4
    r"|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*(?:%[\w.-]+)?)$"  # an IPv6 address, maybe with a zone
)
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_FUNCTION = re.compile(FUNCTION_PATTERN)
_S3_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")


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


def parse_config(text: str, file: str) -> Config:
    """Parse and validate the text of an edeliver.toml; `file` is the name used in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(file, "", f"invalid TOML: {error}") from None
    problems: list[ConfigError] = []
    top = Table(file, "", data, TOP, problems)
    app = top.get("app", str, "the app name as a string")
    known_hosts = top.get("known_hosts", str, "a path to a known_hosts file")
    ssh_config = top.get("ssh_config", str, "a path to an OpenSSH client config file")
    store = collect(problems, lambda: _store(top.table("store")))
    build = collect(problems, lambda: _build(top.table("build")))
    commands = collect(problems, lambda: _commands(top.table("commands")))
    transfer = collect(problems, lambda: _transfer(top.table("transfer"), store))
    nodes = _nodes(top)
    environments = _environments(top, nodes)
    redact = _env_names(top, "redact")
    if problems:  # every mistake of the file at once, in the order of reading
        raise problems[0] if len(problems) == 1 else ConfigErrors(problems)
    assert store and build and commands and transfer
    return Config(
        file, app, store, build, nodes, environments, known_hosts, commands, transfer, ssh_config,
        redact,
    )  # fmt: skip


_STORE_KEYS: dict[StoreKind, tuple[str, ...]] = {
    "local": (),
    "s3": ("endpoint_url", "region", "profile", "checksums"),
    "ssh": ("port", "identity_file"),
}


def _store(table: Table) -> StoreConfig:
    url = table.get("url", str, "a store URL") or DEFAULT_STORE
    kind = store_kind(url, table)
    for key in table.data:
        if key != "url" and key not in _STORE_KEYS[kind] and key in _ALL_STORE_KEYS:
            raise table.fail(key, f"applies to {_kinds_with(key)} stores, not to {url!r}")
    endpoint = table.get("endpoint_url", str, "an http(s) URL without credentials")
    if endpoint is not None and (not re.match(r"^https?://[^@/\s]+(/\S*)?$", endpoint)):
        raise table.fail("endpoint_url", "expected an http(s) URL without credentials")
    port = table.port("port")
    if kind == "ssh":
        _check_ssh_host(table, "url", url)
    store = StoreConfig(
        url,
        kind,
        endpoint_url=endpoint,
        region=table.get("region", str, "an AWS region name"),
        profile=table.get("profile", str, "an AWS profile name"),
        checksums=table.choice("checksums", S3_CHECKSUMS, "when_supported"),
        port=port or 22,
        identity_file=table.get("identity_file", str, "a path to a private key"),
    )
    return store


_ALL_STORE_KEYS = {key for keys in _STORE_KEYS.values() for key in keys}


def _kinds_with(key: str) -> str:
    return " and ".join(kind for kind, keys in _STORE_KEYS.items() if key in keys)


def _transfer(table: Table, store: StoreConfig | None) -> TransferConfig:
    """`store`: None when it has problems of its own, which say what is wrong already."""
    mode = cast(TransferMode, table.choice("mode", TRANSFER_MODES, "push"))
    if mode == "pull" and store is not None and store.kind == "local":
        raise table.fail(
            "mode", "pull needs a store the nodes can reach (s3:// or user@host:/path)"
        )
    expiry = table.int_at_least("url_expiry", 60)
    identity = table.get("node_identity_file", str, "a path to a private key on the nodes")
    return TransferConfig(mode, expiry or TransferConfig.url_expiry, identity)


def ssh_store_address(url: str) -> tuple[str, str, str]:
    """(user, host, path) of a `user@host:/path` store URL."""
    match = _SSH_URL.match(url)
    if not match:
        raise ConfigError("store", "url", f"expected user@host:/path, got {url!r}")
    return match["user"], match["host"], match["path"]


def store_kind(url: str, table: Table | None = None) -> StoreKind:
    """Which kind of store a URL names; credentials in a URL are refused, never parsed."""

    def bad(problem: str) -> ConfigError:
        return table.fail("url", problem) if table else ConfigError("store", "url", problem)

    if url.startswith("s3://"):
        if "@" in url.split("/", 3)[2]:
            raise bad("credentials never go in the URL; use the AWS environment or a profile")
        if not _S3_URL.match(url):
            raise bad(f"expected s3://bucket/prefix with a valid bucket name, got {url!r}")
        return "s3"
    if "://" in url:
        raise bad(f"expected a local directory, user@host:/path or s3://bucket/prefix, got {url!r}")
    if _SSH_URL.match(url):
        return "ssh"
    if not url.strip():
        raise bad("expected a local directory, user@host:/path or s3://bucket/prefix")
    return "local"


def _commands(table: Table) -> CommandsConfig:
    expected = "a shell command run from the release root ({app} is the app name)"
    return CommandsConfig(*(table.get(key, str, expected) for key in ("start", "stop", "health")))


_BUILD_KEYS = {
    "local": (),
    "remote": ("revision", "host", "port", "identity_file"),
    "docker": ("revision", "image", "cli", "global_options", "run_options"),
}


def _build(table: Table) -> BuildConfig:
    strategy = table.choice("strategy", BUILD_STRATEGIES, "local")
    for key in table.data:
        if key != "strategy" and key not in _BUILD_KEYS[strategy]:
            known = [s for s, keys in _BUILD_KEYS.items() if key in keys]
            if known:
                raise table.fail(key, f"applies to strategy = {' or '.join(known)}, not {strategy}")
    host = table.get("host", str, "user@host:/path of the build directories")
    if host is not None and not _SSH_URL.match(host):
        raise table.fail("host", f"expected user@host:/path, got {host!r}")
    if host is not None:
        _check_ssh_host(table, "host", host)
    if strategy == "remote" and host is None:
        raise table.fail("host", "missing; remote builds need user@host:/path")
    image = table.get("image", str, "a container image name")
    if strategy == "docker" and image is None:
        raise table.fail("image", "missing; docker builds need an image with elixir")
    port = table.port("port")
    build = BuildConfig(
        strategy=strategy,
        revision=table.get("revision", str, "a git revision") or "HEAD",
        host=host,
        port=port,
        identity_file=table.get("identity_file", str, "a path to a private key"),
        image=image,
        cli=table.choice("cli", CONTAINER_CLIS, "docker"),
        global_options=table.strings("global_options") or (),
        run_options=table.strings("run_options") or (),
        auto_version=_auto_version(table),
        mix_env=_mix_name(table, "mix_env", "a MIX_ENV such as prod") or "prod",
        release=_mix_name(table, "release", "the name of a release in mix.exs") or "",
    )
    return build


# What mix accepts as an environment or release name (both become atoms and directory names).
_MIX_NAME = re.compile(MIX_NAME_PATTERN)


def _mix_name(table: Table, key: str, expected: str) -> str | None:
    value = table.get(key, str, expected)
    if value is not None and not _MIX_NAME.match(value):
        raise table.fail(key, f"expected {expected} (lowercase letters, digits, _), got {value!r}")
    return value


def _auto_version(table: Table) -> tuple[str, ...]:
    parts = table.strings("auto_version") or ()
    for part in parts:
        if part not in AUTO_VERSION_PARTS:
            raise table.fail(
                "auto_version", f"expected some of {', '.join(AUTO_VERSION_PARTS)}, got {part!r}"
            )
    if len(set(parts)) != len(parts):
        raise table.fail("auto_version", "names a part twice")
    return parts


def _nodes(top: Table) -> dict[str, NodeConfig]:
    """The nodes that read without a problem (the others' problems are recorded)."""
    nodes: dict[str, NodeConfig] = {}
    seen: dict[tuple[str, int | None], str] = {}
    for name, table in top.subtables("nodes", lambda name: bool(_NAME.match(name))):
        node = collect(top.problems, partial(_node, name, table))
        if node is None:
            continue
        other = seen.setdefault((node.host, node.port), name)
        if other != name:
            where = node.host if node.port is None else f"{node.host}:{node.port}"
            table.record("host", f"{where} is already the address of node {other!r}")
        nodes[name] = node
    return nodes


def _node(name: str, table: Table) -> NodeConfig:
    host = _host(table)
    port = table.port("port")
    path = table.require("path", str, "an absolute deploy path")
    if not path.startswith("/"):
        raise table.fail("path", f"expected an absolute deploy path, got {path!r}")
    node = NodeConfig(
        name=name,
        host=host,
        path=path.rstrip("/") or "/",
        port=port,
        user=_user(table),
        labels=table.strings("labels") or (),
        identity_file=table.get("identity_file", str, "a path to a private key"),
        env=_settings(table, per_node=True),
        node_name=_node_name(table),
    )
    if node.node_name and any(name == "RELEASE_NODE" for name, _ in node.env):
        raise table.fail("node_name", "given twice: here and as env.RELEASE_NODE")
    return node


def _settings(table: Table, per_node: bool = False) -> Settings:
    def check(key: str, data: object) -> Settings:
        return parse_settings(table.file, key, data, per_node=per_node)

    return table.checked("env", check) or ()


def _node_name(table: Table) -> str | None:
    name = table.get("node_name", str, "a node name like app@host")
    return None if name is None else check_node_name(table.file, table.key("node_name"), name)


def _env_names(table: Table, key: str) -> tuple[str, ...]:
    names = table.strings(key) or ()
    for name in names:
        if not ENV_NAME.match(name):
            table.record(key, f"expected environment variable names, got {name!r}")
            return ()
    return names


def _host(table: Table) -> str:
    """The node's host alone: its user and port have keys of their own, and a host that a shell
    or ssh could read as something else is refused rather than quoted into a surprise."""
    host = table.require("host", str, "a host name or address")
    problem = (
        "empty; expected a host name or address" if not host.strip()
        else f"{host!r} has a user in it; give it as user = ..." if "@" in host
        else f"{host!r} has a port in it; give it as port = ..." if _with_port(host)
        else f"{host!r} has spaces or shell characters; expected a host name or address"
        if not _HOST.match(host)
        else None
    )  # fmt: skip
    if problem:
        raise table.fail("host", problem)
    return host


def _check_ssh_host(table: Table, key: str, url: str) -> None:
    """The host of a user@host:/path setting is held to the rule of nodes' hosts."""
    _, host, _ = ssh_store_address(url)
    if not _HOST.match(host):
        raise table.fail(key, f"host {host!r} has spaces or shell characters, in {url!r}")


def _with_port(host: str) -> bool:
    """`name:22`, `10.0.0.1:22` or `[::1]:22`; a bare IPv6 address has colons of its own."""
    return bool(re.match(r"^(\[.*\]|[^:]*):\d*$", host))


def _user(table: Table) -> str | None:
    user = table.get("user", str, "a user name")
    if user is not None and not _USER.match(user):
        raise table.fail("user", f"expected a user name (letters, digits, _ . -), got {user!r}")
    return user


def _environments(top: Table, nodes: Mapping[str, NodeConfig]) -> dict[str, EnvironmentConfig]:
    """The environments that read without a problem; a node named in one but with problems of
    its own is not blamed on the environment again."""
    declared = set(top.table_data("nodes"))
    environments = {}
    for name, table in top.subtables("environments", lambda name: bool(_NAME.match(name))):
        environment = collect(top.problems, partial(_environment, name, table, nodes, declared))
        if environment is not None:
            environments[name] = environment
    return environments


def _environment(
    name: str, table: Table, nodes: Mapping[str, NodeConfig], declared: Collection[str]
) -> EnvironmentConfig:
    members = _members(table, nodes, declared)
    max_parallel = table.int_at_least("max_parallel", 1)
    policy = Policy(
        strategy=cast(Strategy, table.choice("strategy", STRATEGIES, Policy.strategy)),
        fallback=cast(Fallback, table.choice("fallback", FALLBACKS, Policy.fallback)),
        max_parallel=max_parallel,
        max_failures=table.int_at_least("max_failures", 0),
    )
    step_timeout = table.seconds("step_timeout") or EnvironmentConfig.step_timeout
    environment = EnvironmentConfig(
        name=name,
        nodes=members,
        mode=cast(Mode, table.choice("mode", MODES, "release")),
        policy=policy,
        step_timeout=step_timeout,
        keep_releases=table.int_at_least("keep_releases", 1) or EnvironmentConfig.keep_releases,
        # A health check longer than its step would never end by its own deadline.
        verify_timeout=table.seconds("verify_timeout", at_most=step_timeout),
        command_timeout=table.seconds("command_timeout"),
        env=_settings(table),
        cookie=table.checked("cookie", partial(parse_cookie, table.file)),
        migrate=_function(table, "migrate"),
    )
    # Members with problems of their own are left out: they are reported already.
    names = {n: node for n in members if n in nodes and (node := nodes[n].release_node)}
    check_unique_node_names(table.file, name, members, names)
    return environment


def _function(table: Table, key: str) -> str | None:
    function = table.get(key, str, "an Elixir function such as MyApp.Release.migrate")
    if function is not None and not _FUNCTION.match(function):
        raise table.fail(
            key, f"expected an Elixir function such as MyApp.Release.migrate, got {function!r}"
        )
    return function


def _members(
    table: Table, nodes: Mapping[str, NodeConfig], declared: Collection[str]
) -> tuple[str, ...]:
    """The environment's nodes in order: its `nodes` list, then nodes carrying its `labels`."""
    listed = table.strings("nodes") or ()
    for index, node in enumerate(listed):
        if node not in declared:
            hint = did_you_mean(node, list(declared))
            raise table.fail(f"nodes[{index}]", f"node {node!r} is not defined under [nodes]{hint}")
    labelled: list[str] = []
    for label in table.strings("labels") or ():
        matching = [n.name for n in nodes.values() if label in n.labels]
        if not matching:
            raise table.fail("labels", f"label {label!r} matches no node")
        labelled += matching
    members = tuple(dict.fromkeys([*listed, *labelled]))
    if not members:
        raise ConfigError(
            table.file, table.path, "has no nodes; give nodes = [...] or labels = [...]"
        )
    return members
