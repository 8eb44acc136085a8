"""Every key of `.deliver/edeliver.toml`, declared once: what the parser accepts, what "did you
mean" suggests, and the JSON Schema editors validate against (`edeliver config schema`).

A table is a tuple of `Key`s; a key whose `table` is set holds a table of those keys, and one
whose `each` is set holds named tables of those keys (`[nodes.web1]`). Adding a setting means
adding its `Key` here and reading it in `config.py`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from edeliver.core.domain.auto_version import PARTS as AUTO_VERSION_PARTS

Strategy = Literal["one_for_one", "rest_for_one", "one_for_all"]
Fallback = Literal["rollback", "stop", "ignore"]
Mode = Literal["release", "upgrade"]
TransferMode = Literal["push", "pull"]

STRATEGIES: tuple[Strategy, ...] = ("one_for_one", "rest_for_one", "one_for_all")
FALLBACKS: tuple[Fallback, ...] = ("rollback", "stop", "ignore")
MODES: tuple[Mode, ...] = ("release", "upgrade")
BUILD_STRATEGIES = ("local", "remote", "docker")
TRANSFER_MODES: tuple[TransferMode, ...] = ("push", "pull")
S3_CHECKSUMS = ("when_supported", "when_required")
CONTAINER_CLIS = ("docker", "podman")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # node and environment names
MIX_NAME_PATTERN = r"^[a-z_][a-z0-9_]*$"  # what mix accepts as an environment or release name
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"  # an environment variable's name
NODE_NAME_PATTERN = r"^[A-Za-z0-9_-]+@[A-Za-z0-9_.-]+$"  # a distributed Erlang node name
# An Elixir remote function of no arguments, as `[environments.X] migrate` names it.
FUNCTION_PATTERN = r"^(?:[A-Z][A-Za-z0-9_]*\.)+[a-z_][A-Za-z0-9_]*[!?]?$"

Kind = Literal["string", "integer", "number", "boolean", "strings", "table", "settings"]


@dataclass(frozen=True)
class Key:
    """One setting: its TOML type, what it means, and the bounds the parser holds it to."""

    name: str
    kind: Kind
    help: str
    choices: tuple[str, ...] = ()  # for strings, or for each item of a list of strings
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    pattern: str | None = None
    required: bool = False
    table: tuple[Key, ...] | None = None  # the keys of the table it holds
    each: tuple[Key, ...] | None = None  # the keys of each named table it holds


def _text(name: str, help: str, **more: Any) -> Key:
    return Key(name, "string", help, **more)


def _port(help: str) -> Key:
    return Key("port", "integer", help, minimum=1, maximum=65535)


def _seconds(name: str, help: str) -> Key:
    return Key(name, "number", help, exclusive_minimum=0)


def _settings(help: str) -> Key:
    """An `env` table: NAME = a plain value, { from_env = "VAR" } or { from_file = "path" }
    (core/domain/runtime_env.py reads it, by rules the schema states as far as it can)."""
    return Key("env", "settings", help)


FROM_ENV: tuple[Key, ...] = (
    _text("from_env", "The deployer's environment variable, read at deploy time", required=True,
          pattern=ENV_NAME_PATTERN),
)  # fmt: skip
FROM_FILE: tuple[Key, ...] = (
    _text("from_file", "A file under the deploy path's shared/, read on the node", required=True),
)


STORE: tuple[Key, ...] = (
    _text("url", "A local directory, user@host:/path or s3://bucket/prefix"),
    _text("endpoint_url", "s3: an S3-compatible endpoint, http(s) without credentials"),
    _text("region", "s3: the AWS region"),
    _text("profile", "s3: an AWS profile name (its keys stay in ~/.aws)"),
    _text("checksums", "s3: boto3's checksum setting", choices=S3_CHECKSUMS),
    _port("ssh: the store host's port"),
    _text("identity_file", "ssh: the deployer's private key for the store host"),
)
BUILD: tuple[Key, ...] = (
    _text("strategy", "Where releases are built", choices=BUILD_STRATEGIES),
    _text("revision", "remote, docker: the git revision built (default HEAD)"),
    _text("host", "remote: user@host:/path of the build directories"),
    _port("remote: the build host's port"),
    _text("identity_file", "remote: the private key for the build host"),
    _text("image", "docker: an image with elixir"),
    _text("cli", "docker: the container command", choices=CONTAINER_CLIS),
    Key("global_options", "strings", "docker: options before `run`"),
    Key("run_options", "strings", "docker: options of `run`"),
    Key("auto_version", "strings", "Build metadata appended to the version", AUTO_VERSION_PARTS),
    _text("mix_env", "The MIX_ENV of the build (default prod)", pattern=MIX_NAME_PATTERN),
    _text("release", "Which of mix.exs's releases (default: mix's)", pattern=MIX_NAME_PATTERN),
)
COMMANDS: tuple[Key, ...] = tuple(
    _text(name, f"The shell command that {does}, from the release root ({{app}}: the app)")
    for name, does in (("start", "starts"), ("stop", "stops"), ("health", "checks health"))
)
TRANSFER: tuple[Key, ...] = (
    _text("mode", "push: the deployer uploads; pull: each node fetches", choices=TRANSFER_MODES),
    Key("url_expiry", "integer", "s3 pull: seconds a presigned URL stays valid", minimum=60),
    _text("node_identity_file", "ssh pull: the nodes' private key for the store host"),
)
NODE: tuple[Key, ...] = (
    _text("host", "A host name or address (no user, no port)", required=True),
    _text("path", "The absolute deploy path", required=True, pattern="^/"),
    _port("The SSH port (default: the ssh config's, else 22)"),
    _text("user", "The SSH user (default: the ssh config's, else yours)"),
    Key("labels", "strings", "Labels environments select nodes by"),
    _text("identity_file", "The private key for this node"),
    _settings("The app's runtime settings on this node, over its environment's"),
    _text("node_name", "RELEASE_NODE: the node's Erlang name", pattern=NODE_NAME_PATTERN),
)
ENVIRONMENT: tuple[Key, ...] = (
    Key("nodes", "strings", "Node names, in rollout order"),
    Key("labels", "strings", "Nodes carrying any of these labels join, after `nodes`"),
    _text("mode", "release: full restart; upgrade: hot code upgrade", choices=MODES),
    _text("strategy", "Which nodes a failure reaches", choices=STRATEGIES),
    _text("fallback", "What happens to the nodes a failure reaches", choices=FALLBACKS),
    Key("max_parallel", "integer", "Nodes updated at once (default: all)", minimum=1),
    Key("max_failures", "integer", "Failures tolerated before escalating", minimum=0),
    _seconds("step_timeout", "Seconds one step may take (default 300)"),
    Key("keep_releases", "integer", "Releases kept on each node (default 5)", minimum=1),
    _seconds("verify_timeout", "Seconds a new release may take to pass its health check"),
    _seconds("command_timeout", "Seconds one node script may run"),
    _settings("The app's runtime settings on every node of the environment"),
    Key("cookie", "table", "The Erlang cookie (default: generated once)", table=FROM_ENV),
    _text(
        "migrate",
        "`edeliver migrate`: a function like MyApp.Release.migrate",
        pattern=FUNCTION_PATTERN,
    ),
)
TOP: tuple[Key, ...] = (
    _text("app", "The app name (default: mix.exs's)"),
    _text("known_hosts", "A known_hosts file, relative to the project"),
    _text("ssh_config", "An OpenSSH client config file (default ~/.ssh/config)"),
    Key("store", "table", "Where releases live", table=STORE),
    Key("build", "table", "How releases are built", table=BUILD),
    Key("commands", "table", "Start, stop and health commands", table=COMMANDS),
    Key("transfer", "table", "How releases reach the nodes", table=TRANSFER),
    Key("nodes", "table", "The nodes, by name", each=NODE),
    Key("environments", "table", "Named node groups and their rollout settings", each=ENVIRONMENT),
    Key("redact", "strings", "Deployer's variables whose values are never shown"),
)


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """`; did you mean 'x'?` when a known name is close to `name`, else nothing."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def json_schema() -> dict[str, Any]:
    """The JSON Schema of edeliver.toml, for editors (taplo, VS Code's Even Better TOML)."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://edeliver.dev/schema/edeliver.toml.json",
        "title": "edeliver.toml",
        "description": "Edeliver 2.0's configuration: .deliver/edeliver.toml",
        **_object(TOP),
    }


def _object(keys: tuple[Key, ...]) -> dict[str, Any]:
    required = [key.name for key in keys if key.required]
    return {
        "type": "object",
        "properties": {key.name: _property(key) for key in keys},
        "additionalProperties": False,
        **({"required": required} if required else {}),
    }


def _settings_object() -> dict[str, Any]:
    """An env table: each variable a plain value or a secret's source."""
    plain = [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}]
    value = {"oneOf": [*plain, _object(FROM_ENV), _object(FROM_FILE)]}
    return {
        "type": "object",
        "propertyNames": {"pattern": ENV_NAME_PATTERN},
        "additionalProperties": value,
    }


def _property(key: Key) -> dict[str, Any]:
    if key.table is not None:
        return {"description": key.help, **_object(key.table)}
    if key.each is not None:
        named = {"type": "object", "propertyNames": {"pattern": NAME_PATTERN}}
        return {"description": key.help, **named, "additionalProperties": _object(key.each)}
    if key.kind == "table":  # a table of free-form keys, read by its own rules
        return {"description": key.help, "type": "object"}
    if key.kind == "settings":
        return {"description": key.help, **_settings_object()}
    if key.kind == "strings":
        item: dict[str, Any] = {"type": "string"}
        item |= {"enum": list(key.choices)} if key.choices else {}
        return {"description": key.help, "type": "array", "items": item}
    bounds = {
        "enum": list(key.choices) or None,
        "minimum": key.minimum,
        "maximum": key.maximum,
        "exclusiveMinimum": key.exclusive_minimum,
        "pattern": key.pattern,
    }
    given = {name: value for name, value in bounds.items() if value is not None}
    return {"description": key.help, "type": key.kind, **given}
