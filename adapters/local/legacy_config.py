"""Reads an edeliver 1.x `.deliver/config` the way edeliver 1.x did: by sourcing it with bash."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edeliver.adapters.local.bounded_output import run_local
from edeliver.adapters.local.ssh_config import DEFAULT_CONFIG, DEFAULT_PORT, resolve
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.errors import ConfigError
from edeliver.core.domain.legacy import KNOWN, Alias, Migration, migrate
from edeliver.core.domain.tasks import LEGACY_STAGES, TaskSpec

if TYPE_CHECKING:
    from edeliver.core.usecases.loaded_task import LoadedTask

LEGACY_CONFIG = Path(".deliver/config")
# Source the config in a clean bash, then print the known variables, every `<ENV>_HOSTS`,
# `_USER` or `_NODES` it set (not the environment's SUDO_USER…), and every function name,
# NUL-separated, so no value can be mistaken for another.
_READER = r"""
declare -A before; for name in $(compgen -v); do before[$name]=1; done
source "$1" >/dev/null || exit 97
for name in $(compgen -v); do
  case "$name" in *_HOSTS|*_USER|*_NODES) [ -n "${before[$name]-}" ] || set -- "$@" "$name" ;; esac
done
for name in "${@:2}"; do printf '%s\0%s\0' "$name" "${!name-}"; done
printf '%s\0' --functions--; compgen -A function | tr '\n' '\0'
"""


def read_legacy_config(project: Path) -> tuple[dict[str, str], list[str]]:
    """The known variables and the function names a legacy config defines."""
    path = project / LEGACY_CONFIG
    if not path.is_file():
        raise ConfigError(str(LEGACY_CONFIG), "", "not found; nothing to migrate")
    done = run_local(
        ["bash", "--noprofile", "--norc", "-c", _READER, "edeliver-config", str(path), *KNOWN],
        cwd=project,
        timeout=30,
    )
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise ConfigError(
            str(LEGACY_CONFIG),
            "",
            "bash cannot source it: "
            + (" ".join(said[-2:]) if said else f"exit {done.returncode}"),
        )
    fields = done.stdout.split("\0")
    split = fields.index("--functions--")
    values = fields[:split]
    variables = {values[i]: values[i + 1] for i in range(0, len(values) - 1, 2)}
    return variables, [f for f in fields[split + 1 :] if f]


# What edeliver 1.x gave its hooks besides the variables: `status`, `error`, and `__remote` /
# `__sync_remote` reaching the hosts of the stage (here: the node, or every node around a whole
# rollout) with the system's OpenSSH client, host keys checked, in parallel like 1.x; it reads
# the same ssh config as Edeliver (-F), since OpenSSH would take the passwd home's, not $HOME's.
_HOOK_RUNTIME = r"""#!/bin/bash --noprofile --norc
status() { echo "-----> $*"; }
error() { echo "$*" >&2; exit 1; }
__remote() {
  local pids=() failed=0 port login identity path
  while IFS=$'\x1f' read -r port login identity path; do
    [ -n "$login" ] || continue
    identity="${identity/#\~\//$HOME/}"  # a toml's ~/key: the deployer's home
    ssh -n -o BatchMode=yes -o StrictHostKeyChecking=yes -o LogLevel=ERROR \
      ${EDELIVER_SSH_CONFIG:+-F "$EDELIVER_SSH_CONFIG"} \
      ${EDELIVER_KNOWN_HOSTS:+-o "UserKnownHostsFile=$EDELIVER_KNOWN_HOSTS"} \
      ${identity:+-o IdentitiesOnly=yes -i "$identity"} ${port:+-p "$port"} "$login" "$1" &
    pids+=($!)
  done <<< "$EDELIVER_SSH_TARGETS"
  [ "${#pids[@]}" -gt 0 ] || error "no host to reach at this stage (HOSTS is empty): $1"
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  [ "$failed" = 0 ] || error "remote command failed on $HOSTS: $1"
}
__sync_remote() {
  case "$HOSTS" in *" "*) error "__sync_remote reaches one host, but HOSTS is: $HOSTS" ;; esac
  __remote "$1"
}
# 1.x rebound these per phase after loading the config: the stage's values win over its own.
__edeliver_context=()
for __name in HOSTS APP_USER DELIVER_TO BUILD_AT BUILD_HOST BUILD_USER; do
  [ -z "${!__name+set}" ] || __edeliver_context+=("$__name=${!__name}")
done
source .deliver/config >/dev/null || exit 97
for __setting in "${__edeliver_context[@]}"; do declare -g -- "$__setting"; done
"""


def migrate_project(project: Path, ssh_config: Sequence[str], source: str) -> Migration:
    """The project's .deliver/config as edeliver.toml, its ssh config aliases resolved."""
    variables, functions = read_legacy_config(project)
    return migrate(variables, functions, source, ssh_aliases(variables, ssh_config))


def ssh_aliases(variables: Mapping[str, str], ssh_config: Sequence[str]) -> dict[str, Alias]:
    """The hosts of the config whose ssh config gives a port other than 22, a key or a user."""
    found: dict[str, Alias] = {}
    shown = ", ".join(ssh_config) or DEFAULT_CONFIG
    for host in _hosts(variables):
        hop = resolve(NodeConfig(host, host, "/"), ssh_config).target
        port = hop.port if hop.port != DEFAULT_PORT else None
        identity = _home_relative(hop.identity_files[0]) if hop.identity_files else None
        if port is not None or identity is not None or hop.user:
            found[host] = Alias(port, identity, shown, hop.user)
    return found


def _home_relative(path: str) -> str:
    """`~/…` for a file under the home, as people write keys, so the toml travels."""
    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + "/") else path


def _hosts(variables: Mapping[str, str]) -> list[str]:
    hosts = variables.get("BUILD_HOST", "").split()
    for name, value in variables.items():
        if name.endswith("_HOSTS"):
            hosts += value.split()
        elif name.endswith("_NODES"):
            hosts += [e.split("@")[-1].split(":")[0] for e in value.split()]
    return list(dict.fromkeys(h for h in hosts if h and h != "docker"))


def legacy_hook_tasks(project: Path) -> list[LoadedTask]:
    """Each hook function of a legacy `.deliver/config` as a local shell task at its stage; its
    exit status counts only through `error`, `exit` or a failing `__remote`, as in edeliver 1.x."""
    # Imported here: reading a config (every command) must not load the event-sourced core.
    from edeliver.core.usecases.loaded_task import LoadedTask

    if not (project / LEGACY_CONFIG).is_file():
        return []
    _, functions = read_legacy_config(project)
    return [
        LoadedTask(
            TaskSpec(name=f"legacy/{hook}", stage=hook, source=str(LEGACY_CONFIG), where="local"),
            script=f"{_HOOK_RUNTIME}{hook}\nexit 0\n",
        )
        for hook in LEGACY_STAGES
        if hook in functions
    ]
