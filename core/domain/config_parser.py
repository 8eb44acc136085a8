"""`.deliver/edeliver.toml` parsed and validated into frozen settings (DESIGN §2).

Parsing is pure: it takes the file's text and the name to blame in errors. Every error names the
file, the key path and what was expected, and unknown keys are errors, so a typo never silently
falls back to a default. The nodes and environments are read here; the tables about releases
(store, build, transfer, commands) in `config_delivery.py`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Mapping
from functools import partial
from typing import cast

from edeliver.core.domain.config import Config, EnvironmentConfig, NodeConfig, Policy
from edeliver.core.domain.config_delivery import (
    HOST,
    parse_build,
    parse_commands,
    parse_store,
    parse_transfer,
)
from edeliver.core.domain.config_keys import (
    FALLBACKS,
    FUNCTION_PATTERN,
    MODES,
    NAME_PATTERN,
    STRATEGIES,
    TOP,
    Fallback,
    Mode,
    Strategy,
    did_you_mean,
)
from edeliver.core.domain.config_table import Table, collect
from edeliver.core.domain.errors import ConfigError, ConfigErrors
from edeliver.core.domain.runtime_settings import (
    ENV_NAME,
    Settings,
    check_node_name,
    check_unique_node_names,
    parse_cookie,
    parse_settings,
)

_NAME = re.compile(NAME_PATTERN)
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_FUNCTION = re.compile(FUNCTION_PATTERN)


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
    store = collect(problems, lambda: parse_store(top.table("store")))
    build = collect(problems, lambda: parse_build(top.table("build")))
    commands = collect(problems, lambda: parse_commands(top.table("commands")))
    transfer = collect(problems, lambda: parse_transfer(top.table("transfer"), store))
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
        if not HOST.match(host)
        else None
    )  # fmt: skip
    if problem:
        raise table.fail("host", problem)
    return host


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
