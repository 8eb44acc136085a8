"""The composition root's build wiring: the configured build strategy (here, on a build host
over SSH, or in a container) running the project's build-stage tasks, and the hot-upgrade
package built here. Imported only by a command that builds, and each builder's adapter only
when it is the configured one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from edeliver.adapters import settings
from edeliver.adapters.settings import Store
from edeliver.cli.composition_adapters import deployer_secrets
from edeliver.core.domain.app import app_name
from edeliver.core.domain.auto_version import version_suffix
from edeliver.core.domain.config import Config
from edeliver.core.domain.model import Artifact
from edeliver.core.ports import Builder, Clock, CommandHost, DirectStore

if TYPE_CHECKING:
    from edeliver.adapters.build.mix_build import BuildStages
    from edeliver.core.usecases.loaded_task import LoadedTask


@dataclass(frozen=True)
class BuildWiring:
    """What the builders of one command are made of: its project, config and clock, the
    project's tasks (read when a builder is wired), and `note`, where a build's lines go
    besides its result (-q keeps them back)."""

    project: Path
    config: Config
    clock: Clock
    tasks: Callable[[], Sequence[LoadedTask]]
    note: Callable[[str], None]

    def builder(self, env: dict[str, str] | None, store: Store) -> Builder[Path]:
        """The configured build strategy, each running the project's build-stage tasks. A build
        host puts its release straight into an S3 store (a presigned PUT), so the tarball never
        passes through this machine."""
        from edeliver.adapters.build.build_scripts import VERSION_SUFFIX, MixTarget
        from edeliver.adapters.build.container_build import ContainerBuilder
        from edeliver.adapters.build.git_source import version_facts
        from edeliver.adapters.build.mix_build import MixLocalBuilder
        from edeliver.adapters.build.remote_build import SshBuildHost

        config, project, app = self.config, self.project, app_name(self.config)
        build = config.build
        target = MixTarget(build.mix_env, build.release)
        if build.auto_version:
            facts = version_facts(project, build.revision, self.clock.now())
            env = {**(env or {}), VERSION_SUFFIX: version_suffix(build.auto_version, facts)}
        at_stage = self._build_stages(env)
        address = settings.build_host(config)
        if address is not None:
            # Only an S3 store takes a presigned PUT (importing its class would need boto3).
            direct = cast(DirectStore, store) if config.store.kind == "s3" else None
            shells = settings.plain_shells(project, config)
            return SshBuildHost(
                project, app, address, shells, revision=build.revision, env=env,
                warn=self._warn, direct=direct, at_stage=at_stage, target=target,
            )  # fmt: skip
        if build.strategy == "docker":
            return ContainerBuilder(
                project, app, build.image or "", cli=build.cli,
                global_options=build.global_options, run_options=build.run_options,
                revision=build.revision, env=env, warn=self._warn, at_stage=at_stage,
                target=target,
            )  # fmt: skip
        return MixLocalBuilder(project, app, env=env, at_stage=at_stage, target=target)

    def _build_stages(self, env: dict[str, str] | None) -> BuildStages:
        """Runs a build stage's tasks. Legacy hooks reach the build host as 1.x's did: HOSTS,
        BUILD_AT (the per-build directory, where the sources are) and `__remote` pointing
        at it."""
        from edeliver.adapters.local.local_commands import LocalCommandHost
        from edeliver.core.usecases.build_tasks import run_build_stage
        from edeliver.core.usecases.task_env import legacy_build_env

        tasks, here, app = self.tasks(), LocalCommandHost(self.project), app_name(self.config)
        remote, secrets = settings.build_host(self.config), deployer_secrets(self.config)

        async def at_stage(stage: str, host: CommandHost, mix: CommandHost | None = None) -> None:
            directory = getattr(host, "path", None)
            legacy = legacy_build_env(remote, directory) if remote and directory else {}
            legacy |= settings.ssh_task_env(self.project, self.config) if legacy else {}
            # MIX_ENV: an Elixir task `where: :build` runs by `mix run` in the built project.
            build_env = {"MIX_ENV": self.config.build.mix_env, **(env or {}), **legacy}
            await run_build_stage(tasks, stage, app, host, here, build_env, self.note, secrets, mix)

        return at_stage

    def _warn(self, text: str) -> None:
        """A build's warnings, beside its tasks' lines."""
        self.note(f"edeliver: warning: {text}")


def upgrade_package(
    project: Path, old: Artifact, new: Artifact
) -> tuple[Path, Artifact, list[str]]:
    """The hot-upgrade package OLD -> NEW built here (both at paths on this machine): its
    tarball, its artifact and what the generator noted."""
    from edeliver.adapters.build.mix_build import BUILD_DIR
    from edeliver.adapters.build.upgrade_build import build_upgrade

    built = build_upgrade(old, new, project / BUILD_DIR / "upgrades", project)
    return built.tarball, built.artifact, list(built.notes)
