"""A project on the in-memory fakes driven through the real CLI (typer's CliRunner): three fake
nodes, a store holding 1.0.0 and 2.0.0, and a deployer that can be made to die mid-write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edeliver.adapters.events.event_store import open_deployments
from edeliver.adapters.events.event_store_faults import CrashingSave, SimulatedCrash
from edeliver.adapters.local.clock import FakeClock
from edeliver.adapters.node.fakes import FakeHost, Faults, InMemoryNodeShells
from edeliver.adapters.store.memory_store import InMemoryReleaseStore
from edeliver.cli.composition import Adapters, Runtime
from edeliver.cli.main import app
from edeliver.core.domain.config import Config
from edeliver.core.usecases.service import Deployments
from tests.support.simulation import artifact, config_text

runner = CliRunner()


class World:
    """One project directory with a config, fake hosts and a store holding 1.0.0 and 2.0.0."""

    def __init__(self, directory: Path, **policy: Any) -> None:
        self.project = directory
        (directory / ".deliver").mkdir()
        # No test here hangs a step: a generous timeout keeps them steady on a loaded machine.
        (directory / ".deliver/edeliver.toml").write_text(config_text(3, step_timeout=30, **policy))
        self.hosts = {f"n{i}": FakeHost() for i in range(3)}
        self.faults = Faults()
        self.store = InMemoryReleaseStore([artifact("1.0.0"), artifact("2.0.0")])
        self.crash_after: int | None = None

    def adapters(self, project: Path, config: Config) -> Adapters:
        return Adapters(self.store, InMemoryNodeShells(self.hosts, self.faults))

    def save(self, deployments: Deployments) -> Any:
        assert self.crash_after is not None
        return CrashingSave(deployments.save, self.crash_after)

    def runtime(self) -> Runtime:
        return Runtime(
            project=self.project,
            clock=FakeClock(),
            user="ann@laptop",
            adapters=self.adapters,
            open_events=lambda project: open_deployments(project, ""),
            save_events=self.save if self.crash_after is not None else None,
        )

    def run(self, *args: str) -> Any:
        return runner.invoke(app, list(args), obj=self.runtime())

    def running(self) -> dict[str, str | None]:
        return {name: host.running for name, host in self.hosts.items()}

    def task_file(self, name: str, text: str) -> Path:
        path = self.project / ".deliver/tasks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def crash_deploy(world: World, after: int) -> None:
    """Run a deploy whose deployer dies once `after` events are stored."""
    world.crash_after = after
    with pytest.raises(SimulatedCrash):
        world.run("deploy", "prod", "--version", "1.0.0")
    world.crash_after = None
