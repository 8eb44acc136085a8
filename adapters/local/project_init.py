"""`edeliver init`: a first `.deliver/edeliver.toml` for a mix project, written from its mix.exs.

The file is rendered from what the user gave (nodes as `name=user@host[:port]:/path`, the
environments grouping them), checked by the same parser every command uses, and only then
written, so `init` never leaves a config that the next command would refuse.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from edeliver.adapters.local.config_file import CONFIG_FILE, mix_app_name
from edeliver.core.domain.config import Config
from edeliver.core.domain.config_parser import parse_config
from edeliver.core.domain.errors import UsageError

_NODE = re.compile(
    r"^(?P<name>[A-Za-z0-9_-]+)=(?:(?P<user>[^@\s:/]+)@)?(?P<host>[^@\s:/]+)"
    r"(?::(?P<port>\d+))?:(?P<path>/\S*)$"
)
_MIX_VERSION = re.compile(r"\bversion:\s*\"([^\"]+)\"")
IGNORED = (
    ".deliver/releases/",
    ".deliver/events.db*",
    ".deliver/cache/",
    ".deliver/build/",
    ".deliver/known_hosts",
)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    host: str
    path: str
    user: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class MixProject:
    app: str
    version: str | None


def parse_node(text: str) -> NodeSpec:
    """`web1=deploy@10.0.0.11:2222:/opt/app` (user and port optional) as a node."""
    found = _NODE.match(text)
    if found is None:
        raise UsageError(
            f"--node {text!r}: expected NAME=[USER@]HOST[:PORT]:/PATH, "
            "e.g. web1=deploy@10.0.0.11:/opt/app"
        )
    port = found["port"]
    return NodeSpec(found["name"], found["host"], found["path"], found["user"], _port(text, port))


def parse_environment(text: str, nodes: list[NodeSpec]) -> tuple[str, list[str]]:
    """`prod=web1,web2` as an environment and its nodes, every one of them given by --node."""
    name, sep, members = text.partition("=")
    listed = [m for m in members.split(",") if m]
    if not sep or not name or not listed:
        raise UsageError(f"--env {text!r}: expected NAME=NODE[,NODE...], e.g. prod=web1,web2")
    unknown = sorted(set(listed) - {n.name for n in nodes})
    if unknown:
        raise UsageError(f"--env {text!r}: no --node named {', '.join(unknown)}")
    return name, listed


def read_mix_project(project: Path) -> MixProject:
    """The app and version of `project/mix.exs`; one line naming the file when it cannot."""
    mix = project / "mix.exs"
    try:
        text = mix.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = "not found" if isinstance(error, FileNotFoundError) else f"unreadable: {error}"
        raise UsageError(f"{mix}: {reason}; run `edeliver init` in a mix project") from None
    app = mix_app_name(project)
    if app is None:
        raise UsageError(f"{mix}: no `app: :name` in its project/0; is it a mix project?")
    version = _MIX_VERSION.search(text)
    return MixProject(app, version.group(1) if version else None)


def render_config(
    mix: MixProject, nodes: list[NodeSpec], environments: dict[str, list[str]]
) -> str:
    """A commented edeliver.toml: the nodes, the environments, the defaults spelt out."""
    parts = [_HEADER.format(app=mix.app, version=mix.version or "?")]
    parts += [_node_table(node) for node in nodes]
    parts += [_ENVIRONMENT.format(name=n, nodes=json.dumps(m)) for n, m in environments.items()]
    return "\n".join(parts)


def write_config(project: Path, text: str, *, force: bool) -> Config:
    """Check the text as every command will, then write it (never over a file unless `force`)."""
    target = project / CONFIG_FILE
    config = parse_config(text, str(CONFIG_FILE))
    if target.exists() and not force:
        raise UsageError(f"{CONFIG_FILE}: already exists; nothing written (--force replaces it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return config


def ignore_generated_files(project: Path) -> list[str]:
    """Add what Edeliver writes into the project to its .gitignore; returns the lines added."""
    gitignore = project / ".gitignore"
    present = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    missing = [line for line in IGNORED if line not in present]
    if missing:
        lead = "\n" if present and present[-1].strip() else ""
        with gitignore.open("a", encoding="utf-8") as out:
            out.write(lead + "# edeliver: built releases and the deployment history\n")
            out.write("".join(f"{line}\n" for line in missing))
    return missing


def _port(text: str, port: str | None) -> int | None:
    if port is None:
        return None
    if not 0 < int(port) < 65536:
        raise UsageError(f"--node {text!r}: port {port} is not between 1 and 65535")
    return int(port)


def _node_table(node: NodeSpec) -> str:
    lines = [f"[nodes.{node.name}]", f"host = {json.dumps(node.host)}"]
    if node.port is not None:
        lines.append(f"port = {node.port}")
    if node.user is not None:
        lines.append(f"user = {json.dumps(node.user)}")
    lines.append(f"path = {json.dumps(node.path)}")
    lines.append('# identity_file = "~/.ssh/deploy_ed25519"   # default: the agent and your keys')
    return "\n".join(lines) + "\n"


_HEADER = """\
# Edeliver 2.0 configuration for {app} (mix.exs version {version} when this was written).
# Every key: docs/configuration.md. Secrets never go here: S3 credentials come from the AWS
# environment, SSH keys from the agent or identity_file.

app = "{app}"
# known_hosts = ".deliver/known_hosts"   # default: ~/.ssh/known_hosts; `edeliver nodes trust`

[store]
url = ".deliver/releases"   # or "s3://bucket/prefix", or "user@host:/path"

[build]
strategy = "local"          # local | remote | docker
"""

_ENVIRONMENT = """\
[environments.{name}]
nodes = {nodes}
mode = "release"            # release (restart) | upgrade (hot code upgrade)
strategy = "one_for_all"    # one_for_one | rest_for_one | one_for_all
fallback = "rollback"       # rollback | stop | ignore
# max_parallel = 1          # nodes at once (default: all)
# step_timeout = 300        # seconds one step may take on one node
# [environments.{name}.env]  # the app's runtime settings, read by config/runtime.exs
# PHX_SERVER = true
# DATABASE_URL = {{ from_env = "DATABASE_URL" }}          # a secret: your environment's, at deploy
# SECRET_KEY_BASE = {{ from_file = "secret_key_base" }}   # a secret kept on each node in shared/
"""
