"""Domain values shared by the core and the adapters: what a node is like, what gets shipped."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Platform:
    """The platform a release was built for or a node runs; ERTS inside means both must match."""

    os: str = ""
    arch: str = ""
    libc: str = ""
    libc_version: str = ""

    def __str__(self) -> str:
        return f"{self.os}/{self.arch}/{self.libc}-{self.libc_version}"


@dataclass(frozen=True)
class NodeFacts:
    """What a probe learned about one node (DESIGN §8)."""

    platform: Platform = Platform()
    free_bytes: int = 0
    running_version: str | None = None  # what the running VM says
    current_version: str | None = None  # where `current` points: the version a restart boots
    releases: tuple[str, ...] = ()  # complete release dirs on disk
    previous_version: str | None = None  # what a rollback of `current` returns to, if recorded

    def as_dict(self) -> dict[str, object]:
        return {
            "platform": str(self.platform),
            "free_bytes": self.free_bytes,
            "running_version": self.running_version,
            "current_version": self.current_version,
            "releases": list(self.releases),
        }


@dataclass(frozen=True)
class Route:
    """How one node of an upgrade-mode deployment is updated, decided at its first step and
    recorded, so a resumed run (a new process) follows it and rolls back the same way.

    `rollback_to` is the release the node reported it would return to: for the hot route the
    version release_handler says is permanent, for the full route the one `current` points to.
    """

    hot: bool
    why: str
    rollback_to: str | None = None
    running: str | None = None  # what the node said runs when the route was decided
    package_from: str | None = None  # hot: the version the uploaded package upgrades from

    def as_dict(self) -> dict[str, object]:
        return {
            "hot": self.hot,
            "why": self.why,
            "rollback_to": self.rollback_to,
            "running": self.running,
            "package_from": self.package_from,
        }

    @classmethod
    def from_dict(cls, fields: dict[str, object]) -> Route:
        def text(key: str) -> str | None:
            value = fields.get(key)
            return value if isinstance(value, str) else None

        return cls(
            bool(fields["hot"]), str(fields["why"]), text("rollback_to"), text("running"),
            text("package_from"),
        )  # fmt: skip


@dataclass(frozen=True)
class Artifact:
    """One built release (or upgrade package) of an app version, as the store describes it."""

    app: str
    version: str
    sha256: str
    size: int
    kind: str = "release"
    platform: Platform = Platform()
    location: str = ""  # where the store keeps it: a local path, an ssh path or an S3 key
    from_versions: tuple[str, ...] = field(default=())
    # Provenance, recorded in the manifest: what was built, from what, with which toolchain.
    git_revision: str = ""
    built_at: str = ""
    erts: str = ""
    otp: str = ""
    elixir: str = ""

    @property
    def name(self) -> str:
        return f"{self.app}-{self.version}.tar.gz"
