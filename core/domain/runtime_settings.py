"""The app's runtime settings as edeliver.toml spells them (DESIGN §2): parsed and checked
when the config is read. `runtime_env` resolves them per node at deploy time; this half is apart
so that the config model can use it without a cycle (runtime_env reads the Config).

In edeliver.toml, plain values sit in `[environments.<env>.env]` and `[nodes.<node>.env]` (the
node's win); secrets never do: a secret is named there and taken from the deployer's
environment at deploy time (`NAME = { from_env = "DEPLOYER_VAR" }`) or from a file kept on the
node under the deploy path's `shared/` (`NAME = { from_file = "secret_key_base" }`). The node
name (`RELEASE_NODE`) is set per node (`node_name`, or `RELEASE_NODE` in the node's env) and is
unique within each environment; the Erlang cookie is one per environment: `cookie = { from_env =
"..." }`, else generated once and kept on the nodes (the adapter's part).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edeliver.core.domain.config_keys import ENV_NAME_PATTERN, NODE_NAME_PATTERN
from edeliver.core.domain.errors import ConfigError

ENV_NAME = re.compile(ENV_NAME_PATTERN)
# A distributed Erlang node name: `name@host`, as `--name` / `--sname` take it.
NODE_NAME = re.compile(NODE_NAME_PATTERN)
# Set by Edeliver itself, one per node or one per environment: never through an env table.
OWN_NAMES = {"RELEASE_COOKIE": 'cookie = { from_env = "..." } of the environment'}
# Names whose plain value would be a secret in the config. Narrower than redaction's net (which
# also hides every AWS_* value): AWS_REGION = "eu-west-1" is a plain setting.
SECRET_LOOKING = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|_KEY$|COOKIE", re.IGNORECASE)
HOW_SECRETS_GO = 'secrets never go in the config: use { from_env = "VAR" } or { from_file = "..." }'


@dataclass(frozen=True)
class FromEnv:
    """A secret taken from the deployer's environment variable `variable` at deploy time."""

    variable: str


@dataclass(frozen=True)
class FromFile:
    """A secret read on the node from `shared/<path>` each time a command starts there."""

    path: str


Setting = str | FromEnv | FromFile
Settings = tuple[tuple[str, Setting], ...]  # (NAME, setting), in the file's order


def parse_settings(file: str, key: str, data: object, *, per_node: bool = False) -> Settings:
    """An `env` table: each NAME a plain string, `{ from_env = ... }` or `{ from_file = ... }`."""
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise ConfigError(file, key, "expected a table of NAME = value")
    return tuple(
        (name, _setting(file, f"{key}.{name}", name, value, per_node))
        for name, value in data.items()
    )


def _setting(file: str, key: str, name: str, value: object, per_node: bool) -> Setting:
    if not ENV_NAME.match(name):
        raise ConfigError(file, key, "expected an environment variable name (A-Z, 0-9, _)")
    if name in OWN_NAMES:
        raise ConfigError(file, key, f"set by Edeliver; give it as {OWN_NAMES[name]}")
    if name == "RELEASE_NODE" and not per_node:
        raise ConfigError(file, key, "one per node: give it as nodes.<node>.node_name")
    if isinstance(value, bool):  # before int: TOML's true is a Python int too
        return _plain(file, key, name, "true" if value else "false")
    if isinstance(value, str | int):
        return _plain(file, key, name, str(value))
    if isinstance(value, dict):
        return _secret(file, key, value)
    raise ConfigError(
        file, key, f'expected a string, an integer, a boolean, {{ from_env = "VAR" }} or '
        f'{{ from_file = "path" }}, got {value!r}'
    )  # fmt: skip


def _plain(file: str, key: str, name: str, value: str) -> str:
    if SECRET_LOOKING.search(name):
        raise ConfigError(file, key, f"{name} looks like a secret; {HOW_SECRETS_GO}")
    if "\0" in value:
        raise ConfigError(file, key, "a value cannot hold a NUL character")
    if name == "RELEASE_NODE":
        check_node_name(file, key, value)
    return value


def _secret(file: str, key: str, value: dict[str, Any]) -> FromEnv | FromFile:
    if set(value) == {"from_env"} and isinstance(value["from_env"], str):
        if not ENV_NAME.match(value["from_env"]):
            raise ConfigError(file, f"{key}.from_env", "expected an environment variable name")
        return FromEnv(value["from_env"])
    if set(value) == {"from_file"} and isinstance(value["from_file"], str):
        return FromFile(_shared_path(file, f"{key}.from_file", value["from_file"]))
    raise ConfigError(
        file, key, f'expected {{ from_env = "VAR" }} or {{ from_file = "path" }}, got {value!r}'
    )


def _shared_path(file: str, key: str, path: str) -> str:
    """A file below the node's shared/ dir: relative, without `..`, no shell surprises."""
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or not re.match(r"^[A-Za-z0-9_./-]+$", path):
        raise ConfigError(
            file, key, f"expected a path below the node's shared/ dir (like secret_key_base), "
            f"got {path!r}"
        )  # fmt: skip
    return "/".join(p for p in parts if p not in ("", "."))


def parse_cookie(file: str, key: str, data: object) -> FromEnv | None:
    """An environment's `cookie`: only ever a secret from the deployer's environment."""
    if data is None:
        return None
    if isinstance(data, dict) and set(data) == {"from_env"}:
        secret = _secret(file, key, data)
        assert isinstance(secret, FromEnv)
        return secret
    raise ConfigError(
        file, key, f'expected {{ from_env = "VAR" }} (default: generated once, kept on the '
        f"nodes), got {data!r}"
    )  # fmt: skip


def check_node_name(file: str, key: str, name: str) -> str:
    if not NODE_NAME.match(name):
        raise ConfigError(file, key, f"expected a node name like app@host, got {name!r}")
    return name


def check_unique_node_names(
    file: str, environment: str, members: Iterable[str], names: Mapping[str, str]
) -> None:
    """Two nodes of one environment under one node name could not form a cluster."""
    seen: dict[str, str] = {}
    for node in members:
        name = names.get(node)
        if name is None:
            continue
        other = seen.setdefault(name, node)
        if other != node:
            raise ConfigError(
                file, f"nodes.{node}.node_name", f"{name} is already the node name of "
                f"{other!r} in environment {environment!r}; node names are unique per environment"
            )  # fmt: skip
