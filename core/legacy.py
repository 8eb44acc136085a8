"""edeliver 1.x's `.deliver/config`, as the variables bash left after sourcing it, turned into
the equivalent `edeliver.toml`, with a list of what could not be carried over."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from edeliver.core.config import store_kind
from edeliver.core.errors import ConfigError
from edeliver.core.tasks import LEGACY_STAGES

# The variables edeliver 1.x reads (reference/edeliver1.md §4.1) that this migration knows.
KNOWN = (
    "APP", "BUILD_HOST", "BUILD_USER", "BUILD_AT", "STAGING_HOSTS", "STAGING_USER", "TEST_AT",
    "PRODUCTION_HOSTS", "PRODUCTION_USER", "DELIVER_TO", "RELEASE_STORE", "TARGET_MIX_ENV",
    "AUTO_VERSION", "GIT_CLEAN_PATHS", "SKIP_GIT_CLEAN", "SKIP_MIX_CLEAN", "ECTO_REPOSITORY",
    "LINK_VM_ARGS", "LINK_SYS_CONFIG", "PROFILE", "SSH_TIMEOUT", "DOCKER_BUILD_IMAGE",
)  # fmt: skip
_MAPPED = {
    "APP",
    "STAGING_HOSTS",
    "STAGING_USER",
    "TEST_AT",
    "PRODUCTION_HOSTS",
    "PRODUCTION_USER",
    "DELIVER_TO",
    "RELEASE_STORE",
}


@dataclass
class Migration:
    toml: str
    left_behind: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)


def migrate(variables: Mapping[str, str], functions: list[str], source: str) -> Migration:
    """The edeliver.toml for a legacy config's variables and hook functions."""
    left: list[str] = []
    app = variables.get("APP", "")
    lines = [f"# migrated from {source} by `edeliver migrate-config`", f"app = {_s(app)}"]
    lines += _store(variables.get("RELEASE_STORE", ""), left)
    deliver_to = variables.get("DELIVER_TO", "")
    for env, hosts, user, at in (
        ("staging", "STAGING_HOSTS", "STAGING_USER", variables.get("TEST_AT") or deliver_to),
        ("production", "PRODUCTION_HOSTS", "PRODUCTION_USER", deliver_to),
    ):
        lines += _environment(
            env,
            variables.get(hosts, "").split(),
            variables.get(user, ""),
            _deploy_path(at, app, source),
            left,
        )
    for name in KNOWN:
        if variables.get(name) and name not in _MAPPED:
            left.append(f"{name}={variables[name]!r}: no equivalent setting yet")
    hooks = [f for f in functions if f in LEGACY_STAGES]
    return Migration("\n".join(lines) + "\n", left, hooks)


def _s(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _store(url: str, left: list[str]) -> list[str]:
    if not url:
        return []
    if url.lower().startswith("s3://"):
        left.append(
            "RELEASE_STORE: an s3:// store with credentials in the URL is not carried over; "
            "give s3://bucket/prefix and the AWS environment instead"
        )
        return []
    try:
        store_kind(url)
    except ConfigError as error:
        left.append(f"RELEASE_STORE={url!r}: {error.problem}")
        return []
    return ["", "[store]", f"url = {_s(url)}"]


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


def _environment(env: str, hosts: list[str], user: str, path: str, left: list[str]) -> list[str]:
    if not hosts:
        return []
    if not path:
        left.append(f"{env}: no deploy path (DELIVER_TO / TEST_AT); nodes not written")
        return []
    names = [f"{env}{i}" for i in range(1, len(hosts) + 1)]
    lines = []
    for name, host in zip(names, hosts, strict=True):
        lines += ["", f"[nodes.{name}]", f"host = {_s(host)}", f"path = {_s(path)}"]
        lines += [f"user = {_s(user)}"] if user else []
    lines += [
        "",
        f"[environments.{env}]",
        f"nodes = [{', '.join(_s(n) for n in names)}]",
        "# edeliver 1.x deployed to every host at once and left a failed one behind;",
        "# one_for_all + rollback keeps every node on one release instead.",
        'strategy = "one_for_all"',
        'fallback = "rollback"',
    ]
    return lines
