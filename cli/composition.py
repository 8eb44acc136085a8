"""The composition root: the one place that wires real adapters to the core.

Every command runs against one `Runtime`, built once per command line by the root callback (or
by a test, with fakes behind the same ports). It is immutable; what costs to open is opened on
first use only: the config file and the task files (read once, cached), the event store (a fresh
one per use, closed by whoever asked: read-only commands create none), the store and the node
shells (built per use, since SSH shells belong to the event loop of one run). No other cli
module imports `edeliver.adapters` (an import contract in pyproject.toml).

The Runtime's real factories are `composition_adapters`'s, its builders `composition_builds`'s.
Each function imports the adapters it wires when it is called, and the cli modules import this
module only inside their commands, so that a command pays only for what it uses: `--help` loads
none of it, `plan` reads the SSH config but loads no store, build or event-store adapter, and
boto3 is imported only for an S3 store.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from edeliver.adapters import settings
from edeliver.adapters.local.clock import SystemClock
from edeliver.adapters.settings import Store, release_store
from edeliver.cli.composition_adapters import (
    Adapters,
    OpenNodeControl,
    deployer_secrets,
    load_config,
    local_fleet,
    migrate_project,
    node_controls,
    nothing_recorded,
    open_deployments,
    project_tasks,
    real_adapters,
    status_file_health,
)
from edeliver.cli.output import Output
from edeliver.core.domain.config import Config, NodeConfig
from edeliver.core.domain.errors import UsageError
from edeliver.core.domain.model import Artifact
from edeliver.core.ports import Builder, Clock, NodeShells

if TYPE_CHECKING:
    from edeliver.adapters.local import project_init
    from edeliver.adapters.local.config_file import CONFIG_FILE
    from edeliver.adapters.node.local_fleet import LocalFleet
    from edeliver.adapters.node.node_control import AsyncsshNodeControl as NodeControl
    from edeliver.core.usecases.journal import Listener, SaveEvents
    from edeliver.core.usecases.loaded_task import LoadedTask
    from edeliver.core.usecases.service import Deployments
    from edeliver.core.usecases.services import Services

# What the other cli modules, tests and benches take from the composition root as it is: the
# factories of `composition_adapters` (the configured store, the demo's fleet, the secrets to
# hide...), CONFIG_FILE and project_init read through `__getattr__` (init, migrate-config);
# LocalFleet and NodeControl: types only, for the demo and the operations.
__all__ = [
    "CONFIG_FILE",
    "Adapters",
    "LocalFleet",
    "NodeControl",
    "OpenNodeControl",
    "Store",
    "deployer_secrets",
    "local_fleet",
    "migrate_project",
    "project_init",
    "real_adapters",
    "release_store",
    "status_file_health",
]


def __getattr__(name: str) -> object:
    """CONFIG_FILE and project_init, imported when first asked for: the config file's module
    reads the SSH config (asyncssh's parser), which `history`, say, never needs."""
    if name == "CONFIG_FILE":
        from edeliver.adapters.local.config_file import CONFIG_FILE

        return CONFIG_FILE
    if name == "project_init":
        from edeliver.adapters.local import project_init

        return project_init
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def who() -> str:
    """The deployer as user@host, recorded with every deployment and lock."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


@dataclass(frozen=True)
class Runtime:
    """Everything one command runs against (see the module's docstring); tests replace the
    factories with fakes."""

    project: Path = field(default_factory=Path.cwd)
    clock: Clock = field(default_factory=SystemClock)
    user: str = field(default_factory=who)  # who deploys, for the locks and the history
    load_config: Callable[[Path], Config] = load_config
    adapters: Callable[[Path, Config], Adapters] = real_adapters
    open_events: Callable[[Path], Deployments] = open_deployments
    nothing_recorded: Callable[[Path], bool] = nothing_recorded
    controls: Callable[[Path, Config], OpenNodeControl] = node_controls
    # How events reach the store; tests wrap it to simulate a deployer that dies mid-write.
    save_events: Callable[[Deployments], SaveEvents] | None = None
    console: Console | None = None
    output: Output = field(default_factory=Output)  # -v / -q, from the root callback

    @cached_property
    def config(self) -> Config:
        config = self.load_config(self.project)
        if self.output.verbose:  # -v / -vv show steps and scripts: mask what the config
            # names as secrets too (`from_env`, the cookie's, `redact`), not only secret names
            self.output.redact = deployer_secrets(config)
        return config

    @cached_property
    def tasks(self) -> list[LoadedTask]:
        return project_tasks(self.project)

    @cached_property
    def _console(self) -> Console:
        # Created per command, never at import time, so test runners capture it.
        return self.console or Console(highlight=False, width=output_width())

    def out(self) -> Console:
        return self._console

    def deployments(self) -> Deployments:
        """The event store, opened for one use: the caller closes it."""
        return self.open_events(self.project)

    def recorded_deployments(self) -> Deployments | None:
        """The deployments for a command that only reads them; None when nothing was ever
        recorded, so that reading creates no store (nor a project directory given by mistake)."""
        if not self.project.is_dir():
            raise UsageError(f"{self.project}: no such project directory (-C, EDELIVER_PROJECT)")
        if self.nothing_recorded(self.project):
            return None
        return self.deployments()

    def store(self) -> Store:
        """The store alone: with the real adapters, no node connection is set up (nor its
        modules imported) for it, so `plan` stays light."""
        if self.adapters is real_adapters:
            return settings.release_store(self.project, self.config)
        return self.adapters(self.project, self.config).store

    def node_shells(self, mode: str = "release") -> NodeShells:
        """Just the connections to nodes, for commands that record nothing."""
        from edeliver.core.usecases.services import shells_for

        adapters = self.adapters(self.project, self.config)
        return shells_for(mode, adapters.shells, adapters.upgrade_shells)

    def node_controls(self) -> OpenNodeControl:
        """Opens a node's connection that operates the app's release (start, stop, eval...)."""
        return self.controls(self.project, self.config)

    def services(self, listener: Listener | None, tasks: Sequence[LoadedTask] = ()) -> Services:
        """The ports a rollout runs on, running `tasks`: local ones from the project directory,
        legacy `__remote` checking host keys against the same known_hosts as every connection."""
        from edeliver.adapters.events.event_store import store_patience
        from edeliver.adapters.local.local_commands import LocalCommandHost
        from edeliver.core.usecases.services import Services

        adapters = self.adapters(self.project, self.config)
        deployments = self.deployments()
        task_env = settings.ssh_task_env(self.project, self.config)
        return Services(
            deployments=deployments,
            shells=adapters.shells,
            store=adapters.store,
            clock=self.clock,
            user=self.user,
            listener=listener,
            save=self.save_events(deployments) if self.save_events else None,
            tasks=tuple(tasks),
            local=LocalCommandHost(self.project),
            task_env=task_env,
            redact=deployer_secrets(self.config).including(task_env),
            upgrade_shells=adapters.upgrade_shells,
            patience=store_patience(os.environ),
            warn=lambda line: self.output.note(f"edeliver: {line}"),
            deployer_env=dict(os.environ),
        )

    def node_addresses(self, nodes: Sequence[NodeConfig]) -> dict[str, str]:
        return settings.node_addresses(self.project, self.config, nodes)

    def builder(self, env: dict[str, str] | None, store: Store) -> Builder[Path]:
        """The configured build strategy running the project's build-stage tasks
        (`composition_builds`); `env`: extra build variables."""
        from edeliver.cli.composition_builds import BuildWiring

        wiring = BuildWiring(
            self.project, self.config, self.clock, lambda: self.tasks, self.output.note
        )
        return wiring.builder(env, store)

    def build_upgrade(self, old: Artifact, new: Artifact) -> tuple[Path, Artifact, list[str]]:
        """The hot-upgrade package OLD -> NEW built here: its tarball, artifact and notes."""
        from edeliver.cli.composition_builds import upgrade_package

        return upgrade_package(self.project, old, new)

    async def host_key(self, node: NodeConfig) -> tuple[str, str, str]:
        """The first unpinned host key on the node's route (a jump host's first): whose it is,
        as a known_hosts line and its fingerprint, for the user to confirm."""
        from edeliver.adapters.node.ssh_connect import fetch_host_key

        files = settings.ssh_config_files(self.project, self.config)
        known_hosts = settings.known_hosts_file(self.project, self.config)
        return await fetch_host_key(node, files, known_hosts)

    def pinning_file(self) -> Path:
        return settings.pinning_file(self.project, self.config)

    def pin_host_key(self, line: str) -> None:
        from edeliver.adapters.node.ssh import pin_host_key

        pin_host_key(self.pinning_file(), line)


def output_width() -> int | None:
    """The terminal's width on a terminal (None: rich asks it), else COLUMNS if set, else wide:
    pipes and CI logs get whole lines, not tables cut to rich's default of 80 columns."""
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() else _PIPE_WIDTH


_PIPE_WIDTH = 250
