"""edeliver 1.x's `.deliver/config`, as the variables bash left after sourcing it, turned into
the equivalent `edeliver.toml`, with one line for every 1.x variable that is not carried over.

Hosts may be `~/.ssh/config` aliases: the caller resolves them (`aliases`) and the nodes get
the alias's port and key written out when they differ from SSH's defaults.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from edeliver.core.domain.config_delivery import store_kind
from edeliver.core.domain.errors import ConfigError
from edeliver.core.domain.legacy_variables import AUTO_VERSION_PARTS, IGNORED, KNOWN
from edeliver.core.domain.tasks import LEGACY_STAGES

__all__ = ["KNOWN", "Alias", "Migration", "environment_prefixes", "migrate"]

# `<ENV>_HOSTS` / `<ENV>_NODES` name an environment; 1.x's own deploys knew staging and
# production, its node commands any prefix.
_ENV_VARIABLE = re.compile(r"^(?P<env>[A-Z][A-Z0-9]*)_(?P<kind>HOSTS|NODES)$")
_NODE_ENTRY = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>[^:\s]+):(?P<path>/[^|\s]*)")


@dataclass(frozen=True)
class Alias:
    """What the ssh config says of a host a 1.x config names, where it differs from defaults."""

    port: int | None = None
    identity_file: str | None = None
    source: str = "~/.ssh/config"
    user: str | None = None  # the Host's User, for a BUILD_HOST without BUILD_USER


@dataclass
class Migration:
    toml: str
    notes: list[str] = field(default_factory=list)  # one line each, true of what was written
    hooks: list[str] = field(default_factory=list)


def environment_prefixes(names: list[str]) -> list[str]:
    """The environments a config defines, in the order 1.x users know: staging, production,
    then the others by name."""
    found = {m["env"] for n in names if (m := _ENV_VARIABLE.match(n))}
    first = [e for e in ("STAGING", "PRODUCTION") if e in found]
    return first + sorted(found - set(first))


def migrate(
    variables: Mapping[str, str],
    functions: list[str],
    source: str,
    aliases: Mapping[str, Alias] | None = None,
) -> Migration:
    """The edeliver.toml for a legacy config's variables and hook functions."""
    notes: list[str] = []
    aliases = aliases or {}
    app = variables.get("APP", "")
    lines = [f"# migrated from {source} by `edeliver migrate-config`", f"app = {_s(app)}"]
    lines += _store(variables.get("RELEASE_STORE", ""), notes)
    lines += _build(variables, source, aliases, notes)
    for prefix in environment_prefixes(list(variables)):
        lines += _environment(prefix, variables, app, source, aliases, notes)
    notes += [
        f"ignored: {name}={variables[name]!r}, because {why}"
        for name, why in IGNORED.items()
        if variables.get(name)
    ]
    hooks = [f for f in functions if f in LEGACY_STAGES]
    return Migration("\n".join(lines) + "\n", notes, hooks)


def _s(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _store(url: str, notes: list[str]) -> list[str]:
    if not url:
        return []
    if url.lower().startswith("s3://"):
        notes.append(
            "ignored: RELEASE_STORE, because an s3:// store with credentials in the URL is not "
            "carried over; give s3://bucket/prefix and the AWS environment instead"
        )
        return []
    if url.lower().startswith("docker://"):
        notes.append("ignored: RELEASE_STORE, because docker:// release images are not in 2.0")
        return []
    try:
        store_kind(url)
    except ConfigError as error:
        notes.append(f"ignored: RELEASE_STORE={url!r}, because {error.problem}")
        return []
    return ["", "[store]", f"url = {_s(url)}"]


def _build(
    variables: Mapping[str, str], source: str, aliases: Mapping[str, Alias], notes: list[str]
) -> list[str]:
    """BUILD_HOST/USER/AT: a remote build there; AUTO_VERSION: build metadata; TARGET_MIX_ENV."""
    lines: list[str] = []
    host = variables.get("BUILD_HOST", "").strip()
    if len(host.split()) > 1:
        raise ConfigError(
            source, "BUILD_HOST", f"names several hosts ({host!r}); 2.0 builds on one"
        )
    if host == "docker":
        image = variables.get("DOCKER_BUILD_IMAGE") or "elixir:1.13.3"  # 1.x's default
        lines += ['strategy = "docker"', f"image = {_s(image)}"]
    elif host:
        user = variables.get("BUILD_USER") or (aliases[host].user if host in aliases else None)
        if not user:
            raise ConfigError(
                source, "BUILD_USER", f"missing, and no User for {host} in the ssh config"
            )
        lines += ['strategy = "remote"', f"host = {_s(f'{user}@{host}:{_build_dir(variables)}')}"]
        lines += _alias_keys("build host", host, aliases, notes)
    parts = _auto_version(variables.get("AUTO_VERSION", ""), notes)
    if parts:
        lines.append(f"auto_version = [{', '.join(_s(p) for p in parts)}]")
    mix_env = variables.get("TARGET_MIX_ENV", "").strip()
    if mix_env and mix_env != "prod":
        lines.append(f"mix_env = {_s(mix_env)}")  # the config check names it if it is no name
    return ["", "[build]", *lines] if lines else []


def _build_dir(variables: Mapping[str, str]) -> str:
    """BUILD_AT as the remote build's directory; `~/x` is x below the build user's home."""
    at = variables.get("BUILD_AT", "").strip() or "~/edeliver-builds"
    return at.removeprefix("~/") if at.startswith("~/") else at


def _auto_version(value: str, notes: list[str]) -> list[str]:
    """1.x's `AUTO_VERSION=a+b` parts that 2.0's auto_version has; a line for each other."""
    parts: list[str] = []
    for part in filter(None, value.split("+")):
        mapped = AUTO_VERSION_PARTS.get(part)
        if mapped is None:
            notes.append(
                f"ignored: AUTO_VERSION part {part!r}, because [build] auto_version has only "
                "commit_count, revision, branch and date"
            )
        elif mapped not in parts:
            parts.append(mapped)
    return parts


def _environment(
    prefix: str,
    variables: Mapping[str, str],
    app: str,
    source: str,
    aliases: Mapping[str, Alias],
    notes: list[str],
) -> list[str]:
    env = prefix.lower()
    user = variables.get(f"{prefix}_USER", "")
    hosts = variables.get(f"{prefix}_HOSTS", "").split()
    if hosts:
        at = variables.get("DELIVER_TO", "")
        if prefix == "STAGING":
            at = variables.get("TEST_AT") or at
        path = _deploy_path(at, app, source)
        if not path:
            notes.append(f"{env}: no deploy path (DELIVER_TO / TEST_AT); nodes not written")
            return []
        nodes = [(user, host, path) for host in hosts]
    else:
        nodes = _listed_nodes(prefix, variables.get(f"{prefix}_NODES", ""), notes)
    if not nodes:
        return []
    names = [f"{env}{i}" for i in range(1, len(nodes) + 1)]
    lines = []
    for name, (login, host, path) in zip(names, nodes, strict=True):
        lines += ["", f"[nodes.{name}]", f"host = {_s(host)}", f"path = {_s(path)}"]
        lines += [f"user = {_s(login)}"] if login else []
        lines += _alias_keys(f"node {name}", host, aliases, notes)
    return [
        *lines,
        "",
        f"[environments.{env}]",
        f"nodes = [{', '.join(_s(n) for n in names)}]",
        "# edeliver 1.x deployed to every host at once and left a failed one behind;",
        "# one_for_all + rollback keeps every node on one release instead.",
        'strategy = "one_for_all"',
        'fallback = "rollback"',
    ]


def _listed_nodes(prefix: str, value: str, notes: list[str]) -> list[tuple[str, str, str]]:
    """`<ENV>_NODES="user@host:/path[|config] ..."`, 1.x's per-node form for node commands."""
    nodes = []
    for entry in value.split():
        found = _NODE_ENTRY.match(entry)
        if found is None:
            notes.append(
                f"ignored: {prefix}_NODES entry {entry!r}, because it is not user@host:/path"
            )
            continue
        if "|" in entry:
            notes.append(f"ignored: the |config of {prefix}_NODES entry {entry!r}, because "
                         "2.0 has no per-node --config")  # fmt: skip
        nodes.append((found["user"] or "", found["host"], found["path"].rstrip("/") or "/"))
    return nodes


def _alias_keys(what: str, host: str, aliases: Mapping[str, Alias], notes: list[str]) -> list[str]:
    """The alias's port and key, written so the file says where the node is; a note says so."""
    alias = aliases.get(host)
    if alias is None:
        return []
    lines, said = [], []
    if alias.port is not None:
        lines.append(f"port = {alias.port}")
        said.append(f"port {alias.port}")
    if alias.identity_file:
        lines.append(f"identity_file = {_s(alias.identity_file)}")
        said.append(f"identity_file {alias.identity_file}")
    if said:
        notes.append(f"{what}: {' and '.join(said)} from Host {host} of {alias.source}")
    return lines


def _deploy_path(at: str, app: str, source: str) -> str:
    """edeliver 1.x deploys into $DELIVER_TO/$APP; a `~` path is the deploy user's home."""
    if not at:
        return ""
    if not at.startswith("/"):
        raise ConfigError(
            source,
            "DELIVER_TO",
            f"expected an absolute path, got {at!r} "
            "(edeliver 1.x expands ~ on each host; give the absolute path)",
        )
    return f"{at.rstrip('/')}/{app}" if app else at
