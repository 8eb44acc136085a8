"""The tables of edeliver.toml about releases rather than nodes: where they are built
([build]), kept ([store]), how they reach the nodes ([transfer]) and the commands that run them
([commands]). Each is read from its `Table`; a problem raises, naming the file and key.
"""

from __future__ import annotations

import re
from typing import cast

from edeliver.core.domain.auto_version import PARTS as AUTO_VERSION_PARTS
from edeliver.core.domain.config import (
    BuildConfig,
    CommandsConfig,
    StoreConfig,
    StoreKind,
    TransferConfig,
)
from edeliver.core.domain.config_keys import (
    BUILD_STRATEGIES,
    CONTAINER_CLIS,
    MIX_NAME_PATTERN,
    S3_CHECKSUMS,
    TRANSFER_MODES,
    TransferMode,
)
from edeliver.core.domain.config_table import Table
from edeliver.core.domain.errors import ConfigError

DEFAULT_STORE = ".deliver/releases"
_SSH_URL = re.compile(r"^(?P<user>[^@\s/:]+)@(?P<host>[^:\s/@]+):(?P<path>\S.*)$")
# A host name, an IPv4 address or a bare IPv6 address (with a zone): nothing a shell, ssh's
# option parser or `user@host` splitting could read another way.
HOST = re.compile(
    r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"  # a name, an ssh Host alias, IPv4
    r"|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*(?:%[\w.-]+)?)$"  # an IPv6 address, maybe with a zone
)

_S3_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")


_STORE_KEYS: dict[StoreKind, tuple[str, ...]] = {
    "local": (),
    "s3": ("endpoint_url", "region", "profile", "checksums"),
    "ssh": ("port", "identity_file"),
}


def parse_store(table: Table) -> StoreConfig:
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


def parse_transfer(table: Table, store: StoreConfig | None) -> TransferConfig:
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


def parse_commands(table: Table) -> CommandsConfig:
    expected = "a shell command run from the release root ({app} is the app name)"
    return CommandsConfig(*(table.get(key, str, expected) for key in ("start", "stop", "health")))


_BUILD_KEYS = {
    "local": (),
    "remote": ("revision", "host", "port", "identity_file"),
    "docker": ("revision", "image", "cli", "global_options", "run_options"),
}


def parse_build(table: Table) -> BuildConfig:
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


def _check_ssh_host(table: Table, key: str, url: str) -> None:
    """The host of a user@host:/path setting is held to the rule of nodes' hosts."""
    _, host, _ = ssh_store_address(url)
    if not HOST.match(host):
        raise table.fail(key, f"host {host!r} has spaces or shell characters, in {url!r}")
