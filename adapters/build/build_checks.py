"""What every build strategy checks of its result, and how it tells why a build failed.

A tarball is stored only if it holds the one version it is named for: no `releases/<other>/`,
one `lib/<app>-<v>` per app, every `.app` saying the version its directory names, and the
app's own directory at the release's version. The facts come from `build_scripts.FACTS`, run in
the release root wherever the build ran.
"""

from __future__ import annotations

from edeliver.adapters.build.build_scripts import BuildFacts
from edeliver.core.domain.errors import EdeliverError, UsageError

RELEASE_FILES = frozenset({"start_erl.data", "RELEASES", "COOKIE"})
RELEASE_NAME_ERROR = "** (Mix) edeliver: "  # raised by Mix.Tasks.Edeliver.Release
FETCHING = ("* Getting ", "* Updating ")  # mix's line before it fetches a dependency (git)


class BuildFailed(EdeliverError):
    """The build command failed; the message carries the tail of its output."""


def check_contents(app: str, facts: BuildFacts, suffix: str = "") -> None:
    """Refuse a release that holds another version than its own, naming both versions."""
    version = facts.version
    if not version:
        raise BuildFailed(f"the {app} release has no releases/start_erl.data: not stored")
    refused = f"the {app} {version} release"
    others = sorted(set(facts.releases) - RELEASE_FILES - {version})
    if others:
        raise BuildFailed(f"{refused} also holds releases/{others[0]}: not stored")
    names = [entry.rpartition("-")[0] for entry in facts.lib]
    doubled = sorted({entry for entry in facts.lib if names.count(entry.rpartition("-")[0]) > 1})
    if doubled:
        listed = ", ".join(f"lib/{entry}" for entry in doubled)
        raise BuildFailed(f"{refused} holds several versions of one app ({listed}): not stored")
    for path, vsn in sorted(facts.vsn.items()):
        entry = path.split("/")[1]
        name, _, directory_version = entry.rpartition("-")
        if vsn != directory_version or (name == app and vsn != version):
            raise BuildFailed(f"{refused} holds {path} of version {vsn}: not stored")
    if suffix and not version.endswith(suffix):
        raise BuildFailed(f"{refused} lacks the auto_version suffix {suffix}: not stored")


def deps_failed(where: str, log: str) -> EdeliverError | None:
    """One line from `mix deps.get`'s output: the unknown release, or the dependency that could
    not be fetched and why; None when the failure was another (mix.exs raising, say)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(RELEASE_NAME_ERROR):
            return UsageError(line.removeprefix(RELEASE_NAME_ERROR))
    fetching = [line for line in lines if line.startswith(FETCHING)]
    if not fetching:
        return None
    dependency = fetching[-1].split(" ", 2)[2]
    why = _first(lines, ("fatal:", "error:")) or _last(lines, ("** (",)) or "no output"
    return BuildFailed(f"{where}: fetching dependency {dependency} failed: {why}")


def _first(lines: list[str], starts: tuple[str, ...]) -> str | None:
    return next((line for line in lines if line.startswith(starts)), None)


def _last(lines: list[str], starts: tuple[str, ...]) -> str | None:
    return _first(lines[::-1], starts)
