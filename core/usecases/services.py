"""The ports a rollout runs on, in one bundle: the composition root builds the real one, tests
build one of fakes. Built whole and frozen: nothing fills it in later."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar
from uuid import uuid4

from edeliver.core.domain.redaction import Redactor
from edeliver.core.ports import Clock, CommandHost, NodeShells, ReleaseStore
from edeliver.core.usecases.journal import Listener, Patience, SaveEvents, Warn
from edeliver.core.usecases.loaded_task import LoadedTask
from edeliver.core.usecases.service import Deployments

T = TypeVar("T")


@dataclass(frozen=True)
class Services:
    deployments: Deployments
    shells: NodeShells
    store: ReleaseStore
    clock: Clock
    user: str  # who deploys, as "user@host", for the lock and the history
    listener: Listener | None = None
    # How events reach the store; tests wrap it to simulate a deployer that dies mid-write.
    save: SaveEvents | None = None
    new_id: Callable[[], str] = lambda: str(uuid4())
    # The project's tasks (DESIGN §7), where `local` ones run, and what every task is given.
    tasks: Sequence[LoadedTask] = ()
    local: CommandHost | None = None
    task_env: Mapping[str, str] = field(default_factory=dict)
    # Hides the deployer's secrets in output kept in events (the composition root fills it in).
    redact: Redactor = field(default_factory=Redactor)
    # Deployments in mode "upgrade" (hot code upgrades) go through these; None: `shells`.
    upgrade_shells: NodeShells | None = None
    # How long a failing event store is retried before the rollout stops (`journal.Patience`).
    patience: Patience | None = None
    # Where the journal says that the store is failing and being retried (stderr in the CLI).
    warn: Warn | None = None
    # The deployer's environment, where the config's `from_env` secrets are taken from.
    deployer_env: Mapping[str, str] = field(default_factory=dict)

    def saver(self) -> SaveEvents:
        return self.save or (lambda events: self.deployments.save(*events))

    def shells_for(self, mode: str) -> NodeShells:
        return shells_for(mode, self.shells, self.upgrade_shells)


def shells_for(mode: str, shells: NodeShells, upgrade_shells: NodeShells | None) -> NodeShells:
    """Deployments in mode "upgrade" go through the hot-upgrade shells, when there are any."""
    return upgrade_shells if mode == "upgrade" and upgrade_shells else shells


def now_text(services: Services) -> str:
    """The services' clock, as events record a moment."""
    return services.clock.now().isoformat(timespec="seconds")


async def in_thread(function: Callable[..., T], *args: object) -> T:
    """A blocking call (the event store's) on a worker thread, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args))
