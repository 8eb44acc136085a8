"""A simulated environment on the in-memory fakes: config, hosts, store and services in one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.popo import POPOApplicationRecorder

from edeliver.adapters.events.event_store import store_settings
from edeliver.adapters.events.event_store_faults import CrashingSave
from edeliver.adapters.local.clock import FakeClock
from edeliver.adapters.node.fakes import FakeHost, Faults, InMemoryNodeShells
from edeliver.adapters.store.memory_store import InMemoryReleaseStore
from edeliver.core.domain.config import Config
from edeliver.core.domain.config_parser import parse_config
from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.model import Artifact, Route
from edeliver.core.domain.redaction import Redactor
from edeliver.core.domain.tasks import Selection
from edeliver.core.ports import CommandHost
from edeliver.core.usecases.journal import Patience, SaveEvents
from edeliver.core.usecases.loaded_task import LoadedTask
from edeliver.core.usecases.rollout import deploy, resume
from edeliver.core.usecases.service import Deployments
from edeliver.core.usecases.services import Services


class SharedRecorderDeployments(Deployments):
    """Deployments on an in-memory (POPO) recorder that outlives the application, like a
    database does: each instance is another deployer on the same store."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self._shared = recorder
        super().__init__(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})

    def construct_recorder(self) -> ApplicationRecorder:
        return self._shared


def config_text(
    nodes: int,
    strategy: str = "one_for_all",
    fallback: str = "rollback",
    max_parallel: int | None = None,
    max_failures: int | None = None,
    step_timeout: float = 0.01,
    mode: str = "release",
) -> str:
    lines = ['app = "hello"']
    for i in range(nodes):
        lines += [f"[nodes.n{i}]", 'host = "10.0.0.1"', f"port = {2000 + i}", 'path = "/srv/hello"']
    lines += ["[environments.prod]", "labels = []", f"nodes = {[f'n{i}' for i in range(nodes)]!r}"]
    lines += [f'strategy = "{strategy}"', f'fallback = "{fallback}"']
    lines.append(f"step_timeout = {step_timeout}")
    lines.append(f'mode = "{mode}"')
    if max_parallel is not None:
        lines.append(f"max_parallel = {max_parallel}")
    if max_failures is not None:
        lines.append(f"max_failures = {max_failures}")
    return "\n".join(lines).replace("nodes = [", "nodes = [", 1).replace("'", '"')


def artifact(version: str) -> Artifact:
    return Artifact("hello", version, sha256="0" * 64, size=5_000_000)


@dataclass
class Simulation:
    """N fake hosts, a store holding versions 1..k, and a SQLite event store on disk."""

    config: Config
    db: Path
    hosts: dict[str, FakeHost]
    faults: Faults = field(default_factory=Faults)
    trace: list[tuple[Any, ...]] = field(default_factory=list)
    store: InMemoryReleaseStore = field(default_factory=InMemoryReleaseStore)
    clock: FakeClock = field(default_factory=FakeClock)
    recorder: ApplicationRecorder | None = None
    tasks: list[LoadedTask] = field(default_factory=list)
    local: CommandHost | None = None
    redact: Redactor = field(default_factory=Redactor)
    # Wraps how events reach the store, e.g. in a `FlakySave`: a store that fails.
    flaky: Callable[[SaveEvents], SaveEvents] | None = None
    # A failing store is retried at once here: simulated failures need no real waiting (and
    # the total is generous, so that a loaded machine never turns a retry into a stop).
    patience: Patience = field(default_factory=lambda: Patience(total=30, first=0.001))
    warnings: list[str] = field(default_factory=list)  # what the deployer said on the side
    routes: dict[str, Route] = field(default_factory=dict)  # what each node's shell would decide

    @classmethod
    def create(
        cls, directory: Path, nodes: int, *, in_memory: bool = False, **policy: Any
    ) -> Simulation:
        config = parse_config(config_text(nodes, **policy), "edeliver.toml")
        hosts = {name: FakeHost() for name in config.nodes}
        recorder = POPOApplicationRecorder() if in_memory else None
        return cls(config, directory / "events.db", hosts, recorder=recorder)

    def deployments(self) -> Deployments:
        """A fresh application on the stored events, as a new deployer process would open.

        On SQLite by default; `in_memory` simulations share one in-memory recorder instead (the
        events still go through the JSON mapper), which makes property tests several times faster.
        """
        if self.recorder is not None:
            return SharedRecorderDeployments(self.recorder)
        return Deployments(env=store_settings(self.db.parent, f"sqlite:///{self.db}", {}))

    def services(self, deployments: Deployments, crash_after: int | None = None) -> Services:
        shells = InMemoryNodeShells(self.hosts, self.faults, self.trace, self.routes)

        def save_and_trace(*events: Any) -> None:
            """Store, then note in the trace that the events are stored (and when)."""
            deployments.save(*events)
            self.trace.extend(("event", type(e).__name__, dict(vars(e))) for e in events)

        save: Any = lambda events: save_and_trace(*events)  # noqa: E731
        if self.flaky is not None:
            save = self.flaky(save)
        if crash_after is not None:
            save = CrashingSave(lambda *events, store=save: store(events), crash_after)
        return Services(
            deployments, shells, self.store, self.clock, "tester@ci", save=save,
            tasks=self.tasks, local=self.local, redact=self.redact, patience=self.patience,
            warn=self.warnings.append,
        )  # fmt: skip

    def deploy(
        self, version: str, crash_after: int | None = None, selection: Selection | None = None
    ) -> Deployment:
        self.store.add(artifact(version))
        deployments = self.deployments()
        services = self.services(deployments, crash_after)
        try:
            return asyncio.run(deploy(services, self.config, "prod", version, selection))
        finally:
            deployments.close()
            _drop_connections(services)

    def resume(self, crash_after: int | None = None, force: bool = True) -> Deployment:
        """Resume the unfinished deployment; `force` by default, since the simulated deployer
        that crashed is known to be gone (and the fake clock is not the event store's)."""
        deployments = self.deployments()
        services = self.services(deployments, crash_after)
        try:
            return asyncio.run(resume(services, self.config, None, force))
        finally:
            deployments.close()
            _drop_connections(services)


def _drop_connections(services: Services) -> None:
    """The simulated deployer is gone, crashed or not: its node connections (and locks) too."""
    assert isinstance(services.shells, InMemoryNodeShells)
    services.shells.drop_connections()
