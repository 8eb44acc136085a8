"""The environment lock (DESIGN §5): an aggregate per environment, so that optimistic
concurrency on it makes "at most one active deployment or operation" race-free; its events are
the audit of who held it when."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import register_topic

from edeliver.core.domain.errors import LockHeldError

DEPLOYMENT = "deployment"  # what holds an environment lock, unless an operation does


class EnvironmentLock(Aggregate):
    """Who deploys to (or operates) an environment right now: at most one at a time."""

    @staticmethod
    def create_id(app: str, environment: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"edeliver:/apps/{app}/environments/{environment}")

    @event("Registered")
    def __init__(self, app: str, environment: str) -> None:
        self.app, self.environment = app, environment
        self.deployment_id: str | None = None
        self.holder, self.since = "", ""
        self.what = DEPLOYMENT  # a deployment, or an operation's action (restart, migrate...)

    def acquire(self, deployment_id: str, holder: str, at: str, what: str = DEPLOYMENT) -> None:
        if self.deployment_id is not None:
            raise LockHeldError(f"environment {self.environment!r} is locked by {self.held_by()}")
        if what == DEPLOYMENT:
            self._locked(deployment_id, holder, at)
        else:
            self._operated(deployment_id, holder, at, what)

    def held_by(self) -> str:
        """Who holds the lock, since when, and what ends it."""
        short = (self.deployment_id or "")[:8]
        if self.what != DEPLOYMENT:
            return (
                f"`edeliver {self.what}` {short} ({self.holder}) since {self.since}; it ends "
                f"with that command (`edeliver abandon {short}` if its deployer is gone)"
            )
        return (
            f"deployment {short} ({self.holder}) since {self.since}; "
            f"`edeliver resume {short}` or `edeliver abandon ...`"
        )

    def release(self, deployment_id: str, outcome: str) -> None:
        if self.deployment_id == deployment_id:
            self._unlocked(deployment_id, outcome)

    @event("Locked")
    def _locked(self, deployment_id: str, holder: str, at: str) -> None:
        self.deployment_id, self.holder, self.since = deployment_id, holder, at
        self.what = DEPLOYMENT

    @event("LockedForOperation")
    def _operated(self, deployment_id: str, holder: str, at: str, what: str) -> None:
        self.deployment_id, self.holder, self.since, self.what = deployment_id, holder, at, what

    @event("Unlocked")
    def _unlocked(self, deployment_id: str, outcome: str) -> None:
        self.deployment_id, self.holder, self.since = None, "", ""
        self.what = DEPLOYMENT


# Events stored before this class moved here name the module it had: they still replay.
register_topic("edeliver.core.service:EnvironmentLock", EnvironmentLock)
