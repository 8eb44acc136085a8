"""The variables edeliver 1.x read from `.deliver/config` (reference/edeliver1.md §4.1), and why
the ones 2.0 does not map stay behind: `edeliver migrate-config` names each one it meets."""

from __future__ import annotations

from typing import Final

_BUILT_BY_MIX_RELEASE = "2.0 builds mix projects with `mix release` only"
_FRESH_BUILD_DIR = "every 2.0 build starts from a fresh `git archive` of the revision"
_NO_DOCKER_RELEASES = "docker release images (RELEASE_STORE=docker://) are not in 2.0"
_DAY_TWO = "edeliver 2.0 has no such command yet"
_DISTILLERY_LINK = "a Distillery plugin; keep the file under <path>/shared, link it from a task"

IGNORED: Final[dict[str, str]] = {
    "USING_DISTILLERY": "2.0 always builds with `mix release` (Distillery is not supported)",
    "BUILD_CMD": _BUILT_BY_MIX_RELEASE,
    "RELEASE_CMD": _BUILT_BY_MIX_RELEASE,
    "MIX_CMD": _BUILT_BY_MIX_RELEASE,
    "REBAR_CMD": _BUILT_BY_MIX_RELEASE,
    "REBAR3_CMD": _BUILT_BY_MIX_RELEASE,
    "RELX_CMD": _BUILT_BY_MIX_RELEASE,
    "REBAR_CONFIG": _BUILT_BY_MIX_RELEASE,
    "REBAR_PROFILE": _BUILT_BY_MIX_RELEASE,
    "RELEASE_CMD_OPTIONS": _BUILT_BY_MIX_RELEASE,
    "RELEASE_DIR": "2.0 takes the release `mix release` built, wherever it is",
    "RELEASE_VERSION": "the version is the mix project's (plus [build] auto_version)",
    "LOCAL_RELEASE_STORE": "releases live in the [store] only",
    "GIT_CLEAN_PATHS": _FRESH_BUILD_DIR,
    "SKIP_GIT_CLEAN": _FRESH_BUILD_DIR,
    "SKIP_MIX_CLEAN": _FRESH_BUILD_DIR,
    "SKIP_RELUP_MODIFICATIONS": "2.0 generates relups itself (docs/hot-upgrades.md)",
    "RELUP_MODIFICATION_MODULE": "2.0 generates relups itself (docs/hot-upgrades.md)",
    "START_DEPLOY": "a 2.0 deploy always starts the release and checks its health",
    "CLEAN_DEPLOY": "each release has its own directory; keep_releases prunes the old ones",
    "FORCE": "2.0 never asks before overwriting",
    "ECTO_REPOSITORY": "`edeliver migrate` runs the function that [environments.X] migrate "
    'names (e.g. migrate = "MyApp.Release.migrate"), or run migrations from a task',
    "LINK_VM_ARGS": _DISTILLERY_LINK,
    "LINK_SYS_CONFIG": _DISTILLERY_LINK,
    "PROFILE": "2.0 runs its scripts with sh and sources no profile",
    "SSH_TIMEOUT": "SSH settings come from ~/.ssh/config: set ConnectTimeout there",
    "LOG_FILE": "`edeliver log` keeps every deployment's events",
    "TEST_LOCALLY_AT": f"{_DAY_TWO} (`deploy … local`)",
    "EDELIVER_EDITOR": f"{_DAY_TWO} (`edit relup`)",
    "VERSION_INFO_LAST_COMMITS": "`edeliver ping ENV` shows each node's version, no commits",
    "DOCKER_RELEASE_BASE_IMAGE": _NO_DOCKER_RELEASES,
    "DOCKER_RELEASE_IMAGE_WORKDIR": _NO_DOCKER_RELEASES,
    "DOCKER_OPTS": _NO_DOCKER_RELEASES,
    "CONTAINER_START_SCRIPT": _NO_DOCKER_RELEASES,
    "DOCKER_REGISTRY_TOKEN": _NO_DOCKER_RELEASES,
    "DOCKER_HUB_ACCESS_TOKEN": _NO_DOCKER_RELEASES,
}

MAPPED: Final = (
    "APP", "BUILD_HOST", "BUILD_USER", "BUILD_AT", "DOCKER_BUILD_IMAGE", "AUTO_VERSION",
    "TARGET_MIX_ENV", "RELEASE_STORE", "DELIVER_TO", "TEST_AT",
    "STAGING_HOSTS", "STAGING_USER", "PRODUCTION_HOSTS", "PRODUCTION_USER",
    "STAGING_NODES", "PRODUCTION_NODES",
)  # fmt: skip

# Read from the config by name; any other `<ENV>_HOSTS` / `_USER` / `_NODES` it sets is found too.
KNOWN: Final = (*MAPPED, *IGNORED)

# 1.x's AUTO_VERSION parts (erlang-init:456-469) that 2.0's auto_version has.
AUTO_VERSION_PARTS: Final = {
    "revision": "revision",
    "git-revision": "revision",
    "build-revision": "revision",
    "commit-count": "commit_count",
    "git-commit-count": "commit_count",
    "build-commit-count": "commit_count",
    "branch": "branch",
    "git-branch": "branch",
    "build-branch": "branch",
    "date": "date",
    "build-date": "date",
}
