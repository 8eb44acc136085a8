"""The ports: what the core needs from the outside world, in the core's own words, by family:
nodes (`NodeShells` opening a `NodeShell`, a `CommandHost` for tasks), stores (`ReleaseStore`
and what more the commands and the other adapters ask of one), builds (`Builder`), the `Clock`.

Adapters implement them for asyncssh, boto3, the local disk and mix; in-memory fakes of each
live beside them (`fakes`, `memory_store`, `clock.FakeClock`). Every NodeShell step is
idempotent: running it again after it completed, or after it was cut short, leaves the node as
one successful run would. That is what lets `resume` simply re-run the step of each node that
was in flight.

Files on this machine (a built tarball, a verified local copy) pass through the core without
being opened: their type is a parameter `F` of the ports that hand them over (a `Path` to the
adapters), so the core needs no file-system import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.model import Artifact, NodeFacts, Route

F = TypeVar("F")
F_co = TypeVar("F_co", covariant=True)


@dataclass(frozen=True)
class CommandResult:
    """What a task's command did: its exit status and its output (stdout and stderr, merged)."""

    status: int
    output: str


@dataclass(frozen=True)
class NodeClaim:
    """Who takes a node's lock: the deployment acting on it, its environment, its deployer."""

    deployment_id: str
    environment: str
    deployer: str  # user@host


@dataclass(frozen=True)
class NodeLockHolder:
    """Who holds a node's lock, as the node says: a holder is alive by its heartbeat, judged
    by the node's own clock, so `since` is the node's time and `heartbeat_age` its seconds."""

    node: str
    deployment_id: str
    environment: str
    deployer: str
    since: str  # ISO 8601, UTC, by the node's clock
    heartbeat_age: float
    generation: int

    def describe(self) -> str:
        return (
            f"{self.node} is locked by deployment {self.deployment_id[:8]} "
            f"({self.environment}, deployer {self.deployer}) since {self.since}, "
            f"its last heartbeat {self.heartbeat_age:.0f}s ago"
        )


@dataclass(frozen=True)
class Terminal:
    """The local end of an interactive console: file descriptors to read keys from and write
    output to, the terminal's type and size (columns, lines)."""

    stdin: int
    stdout: int
    term_type: str
    size: tuple[int, int]


class CommandHost(Protocol):
    """Where a task's commands run: a node over its connection, or this machine."""

    async def run_command(self, script: str, env: Mapping[str, str]) -> CommandResult:
        """Run a `sh` script with `env` exported, from the deploy path (or the project)."""
        ...


class NodeShell(CommandHost, Protocol):
    """The steps of the node lifecycle on one node, over one connection."""

    name: str

    async def hold(self, claim: NodeClaim) -> None:
        """Take the node's lock for `claim` until `close`, heartbeats keeping it; waits a bounded
        while for a stale holder of the same deployment, else LockHeldError naming the holder."""
        ...

    async def lock_holder(self) -> NodeLockHolder | None:
        """Who holds the node's lock with a live heartbeat, or None when it is free."""
        ...

    async def probe(self) -> NodeFacts:
        """Platform, free disk, running and current versions, releases on disk."""
        ...

    async def prepare(self, artifact: Artifact) -> Route | None:
        """Upload the artifact (resuming a partial upload) and verify its sha256 on the node.
        A shell with more than one way to update a node returns the Route it took: recorded,
        and given back by `take_route` to the shell of a resumed run."""
        ...

    def take_route(self, route: Route) -> None:
        """Follow the route recorded for this node in an earlier step (perhaps by another
        process) instead of deciding one; shells with only one way ignore it."""
        ...

    async def install(self, artifact: Artifact) -> None:
        """Unpack beside the running release; nothing running changes."""
        ...

    async def activate(self, artifact: Artifact) -> None:
        """Switch `current` atomically and restart into the new release."""
        ...

    async def verify(self, artifact: Artifact) -> None:
        """Health-check that the new release runs."""
        ...

    async def roll_back(self, artifact: Artifact, previous: str | None) -> None:
        """Return to `previous` and run it, or with no previous release stop and leave it empty."""
        ...

    async def eval_elixir(
        self, artifact: Artifact, code: str, env: Mapping[str, str]
    ) -> CommandResult:
        """Evaluate Elixir code with the artifact's release (`bin/<app> eval`) on the node."""
        ...

    async def close(self) -> None: ...


class NodeControl(Protocol):
    """The release a node runs, operated outside a deployment (start, stop, restart); each
    step returns what it did, in a few words, or raises NodeError."""

    name: str

    async def hold(self, claim: NodeClaim) -> None:
        """As `NodeShell.hold`: the node's lock until `close`."""
        ...

    async def start_release(self) -> str:
        """Start the release `current` points to unless it runs; wait until it is healthy."""
        ...

    async def stop_release(self) -> str:
        """Stop the release's VM, if one runs."""
        ...

    async def restart_release(self) -> str:
        """Stop the release's VM and start `current` again; wait until it is healthy."""
        ...

    async def run_migration(self, function: str) -> str:
        """Evaluate `function()` (an Elixir function) with the current release's `eval`; its
        output, or NodeError with it when it fails."""
        ...

    async def close(self) -> None: ...


class NodeShells(Protocol):
    """Opens a NodeShell per node; connection errors are raised as NodeUnreachable."""

    async def open(self, node: NodeConfig) -> NodeShell: ...

    def expect(self, artifact: Artifact) -> None:
        """The release this rollout sends, told once before any node is opened, on the event
        loop: an adapter may start reading it meanwhile (the SSH shells check its archive
        while the nodes are connected, locked and probed). It raises nothing: what it finds
        is told by the step that needs it."""
        ...


# ---- stores ---------------------------------------------------------------------------------


class ReleaseStore(Protocol):
    """Where built releases live, with their manifests."""

    async def versions(self, app: str) -> Sequence[str]: ...

    async def artifact(self, app: str, version: str) -> Artifact:
        """The manifest entry of one version; NotFoundError listing the versions there are."""
        ...


class ReleaseArchive(ReleaseStore, Protocol):
    """A store whose versions can be removed (`edeliver releases prune`)."""

    async def remove(self, app: str, version: str) -> None:
        """Delete a version, its manifest first, so it is never listed half-removed."""
        ...


class Shelf(ReleaseStore, Protocol[F]):
    """A store releases are put into and fetched from as files on this machine."""

    async def put(
        self, tarball: F, artifact: Artifact, extra: dict[str, Any] | None = None
    ) -> Artifact:
        """Store the tarball with its manifest entry (`extra`: provenance fields)."""
        ...

    async def local_file(self, artifact: Artifact) -> F:
        """The stored release as a file on this machine, its checksum verified."""
        ...


class UpgradeStore(Protocol):
    """What the hot route needs from the store: the package from one version to another."""

    async def upgrade(self, app: str, from_version: str, version: str) -> Artifact | None: ...


class Store(ReleaseArchive, Shelf[F], UpgradeStore, Protocol[F]):
    """What the commands need of any store adapter: every store family port at once."""


class FetchingStore(Protocol[F_co]):
    """A remote store the node shells deliver from: pushed from a verified local copy, or
    pulled by each node with a command that writes the release to its stdout."""

    async def local_file(self, artifact: Artifact) -> F_co: ...

    async def fetch_command(self, artifact: Artifact) -> str: ...


class DirectStore(Protocol):
    """A store a build host puts its release into without the deployer in between."""

    async def upload_command(self, app: str, version: str, path: str) -> tuple[str, str]:
        """Where a build host puts its tarball (the release's location in the store) and the
        sh command that puts the file at `path` there; refused when the version is stored."""
        ...

    async def record(self, stored: Artifact, extra: dict[str, Any] | None = None) -> Artifact:
        """Write the manifest entry of a tarball the build host put in."""
        ...


# ---- builds ---------------------------------------------------------------------------------


class Built(Protocol[F_co]):
    """A release tarball on this machine (None: a build host put it in the store already)
    and what the store needs to know of it."""

    @property
    def tarball(self) -> F_co | None: ...

    @property
    def artifact(self) -> Artifact: ...


class Builder(Protocol[F_co]):
    """Builds a release of the project with the configured strategy (here, a build host,
    a container), running its build-stage tasks."""

    async def build(self) -> Built[F_co]: ...


# ---- time -----------------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime: ...
