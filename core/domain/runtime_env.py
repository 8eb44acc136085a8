"""The app's runtime settings per environment and node (DESIGN §2), resolved at deploy time:
each node's values, its `from_file` secrets and the environment's cookie, the `from_env` ones
taken from the deployer's environment (how edeliver.toml spells them, parsed and checked with
the config: `runtime_settings`).

Pure: the deployer's environment is handed in, never read here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edeliver.core.domain.errors import ConfigError
from edeliver.core.domain.runtime_settings import FromEnv, FromFile

if TYPE_CHECKING:
    from edeliver.core.domain.config import Config, EnvironmentConfig, NodeConfig


@dataclass(frozen=True)
class NodeRuntime:
    """What one node's commands get: values exported as they are, files read on the node, and
    the environment's cookie when the deployer gives it (None: kept on the nodes)."""

    values: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, str], ...] = ()  # (NAME, path below shared/)
    cookie: str | None = None

    def __repr__(self) -> str:  # never the values: they may be secrets
        names = [name for name, _ in (*self.values, *self.files)]
        return f"NodeRuntime({', '.join(names)})"


def runtimes(
    config: Config, environment: str, deployer_env: Mapping[str, str]
) -> dict[str, NodeRuntime]:
    """Each node's settings in `environment`, secrets filled in from `deployer_env`: a missing
    variable is a ConfigError naming the key and the variable, before anything reaches a node."""
    env = config.environment(environment)
    key = f"environments.{environment}.cookie"
    cookie = _value(config.file, key, env.cookie, deployer_env) or None
    return {
        name: _node_runtime(config.file, env, config.nodes[name], cookie, deployer_env)
        for name in env.nodes
    }


def _node_runtime(
    file: str,
    env: EnvironmentConfig,
    node: NodeConfig,
    cookie: str | None,
    deployer_env: Mapping[str, str],
) -> NodeRuntime:
    """The environment's settings, the node's over them (each keeping its key, for errors)."""
    merged = {name: (f"environments.{env.name}.env.{name}", s) for name, s in env.env}
    merged |= {name: (f"nodes.{node.name}.env.{name}", s) for name, s in node.env}
    if node.node_name:
        merged["RELEASE_NODE"] = (f"nodes.{node.name}.node_name", node.node_name)
    values: dict[str, str] = {}
    files: list[tuple[str, str]] = []
    for name, (key, setting) in merged.items():
        if isinstance(setting, FromFile):
            files.append((name, setting.path))
        else:
            values[name] = _value(file, key, setting, deployer_env)
    # `--sname` takes no dots: a node name with a full host or an address needs `--name`.
    if "." in values.get("RELEASE_NODE", "").partition("@")[2]:
        values.setdefault("RELEASE_DISTRIBUTION", "name")
    return NodeRuntime(tuple(values.items()), tuple(files), cookie)


def _value(
    file: str, key: str, setting: str | FromEnv | None, deployer_env: Mapping[str, str]
) -> str:
    if setting is None or isinstance(setting, str):
        return setting or ""
    value = deployer_env.get(setting.variable)
    if value is None:
        raise ConfigError(
            file, key, f"{setting.variable} is not set in the deployer's environment; "
            "nothing was changed on any node"
        )  # fmt: skip
    if not value or "\0" in value:
        raise ConfigError(file, key, f"{setting.variable} is empty or holds a NUL character")
    return value


def secret_variables(config: Config) -> set[str]:
    """The deployer's variables the config names as secrets (every `from_env`, every cookie's,
    and those listed in `redact`): their values are never shown."""
    tables = [e.env for e in config.environments.values()] + [n.env for n in config.nodes.values()]
    named = {s.variable for table in tables for _, s in table if isinstance(s, FromEnv)}
    cookies = {e.cookie.variable for e in config.environments.values() if e.cookie is not None}
    return named | cookies | set(config.redact)
