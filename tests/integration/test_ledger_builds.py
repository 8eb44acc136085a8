"""Local builds of examples/ledger, an umbrella with a git dependency (from a bare repository
made here) and a path dependency: deps fetched, one release chosen, only its version inside,
and a version changed through the environment or by auto_version really rebuilt."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from edeliver.adapters.build.build_checks import BuildFailed
from edeliver.adapters.build.build_scripts import VERSION_SUFFIX
from edeliver.adapters.build.mix_build import MixLocalBuilder
from edeliver.cli.composition import Runtime
from edeliver.cli.demo import EXAMPLE
from edeliver.cli.rollout_commands import build_into_store
from edeliver.core.domain.errors import UsageError
from edeliver.core.domain.model import Artifact
from tests.support.ledger_project import (
    FILE_SUBMODULES,
    bare_tally,
    booted_version,
    entries,
    git,
    ledger_copy,
    ledger_env,
    loaded_version,
    report,
    stamp_as_submodule,
    unpack,
)

CONFIG = 'app = "ledger"\n[build]\nrelease = "ledger"\n'


class Ledger:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tally = bare_tally(root)
        self.directory = ledger_copy(root, CONFIG)

    def build(self, version: str, **env: str) -> Artifact:
        return build_into_store(
            Runtime(project=self.directory), env={**ledger_env(version, str(self.tally)), **env}
        )

    def stored(self, version: str) -> Path:
        return self.directory / f".deliver/releases/ledger/{version}/ledger-{version}.tar.gz"


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    project = Ledger(tmp_path_factory.mktemp("ledger"))
    project.build("1.0.0")
    yield project


def test_the_umbrella_s_release_holds_its_deps_and_only_its_version(ledger: Ledger) -> None:
    """deps.get fetched tally from git, stamp came by path; releases/ and lib/ hold 1.0.0 only."""
    tarball = ledger.stored("1.0.0")
    assert [e for e in entries(tarball, "releases") if e[0].isdigit()] == ["1.0.0"]
    libs = entries(tarball, "lib")
    assert {"ledger-1.0.0", "ledger_api-1.0.0", "tally-0.3.0", "stamp-0.2.0"} <= set(libs)
    said = report(unpack(tarball, ledger.root), greeting="read-at-boot")
    assert said == {
        "version": "1.0.0", "total": "6", "stamp": "stamped:ledger", "greeting": "read-at-boot",
    }  # fmt: skip


def test_a_version_changed_only_through_the_environment_is_rebuilt_and_boots(
    ledger: Ledger,
) -> None:
    """The same sources and _build, LEDGER_VERSION=1.1.0: the tarball and the booted node say
    1.1.0 (Elixir 1.14 alone would ship lib/ledger-1.0.0)."""
    ledger.build("1.1.0")
    tarball = ledger.stored("1.1.0")
    libs = entries(tarball, "lib")
    assert "ledger-1.1.0" in libs and "ledger-1.0.0" not in libs
    assert [e for e in entries(tarball, "releases") if e[0].isdigit()] == ["1.1.0"]
    assert booted_version(unpack(tarball, ledger.root)) == "1.1.0"


@pytest.mark.parametrize("suffix", ["2.733a569", "3.9e1f2aa"])
def test_an_umbrella_s_auto_version_release_gives_every_child_app_the_suffix(
    ledger: Ledger, suffix: str
) -> None:
    """Both apps of the umbrella are at 1.1.0+SUFFIX in the tarball and in the booted node, the
    deps at their own versions; built twice in one _build, the second suffix replaces the first."""
    version = f"1.1.0+{suffix}"
    assert ledger.build("1.1.0", **{VERSION_SUFFIX: suffix}).version == version
    tarball = ledger.stored(version)
    libs = entries(tarball, "lib")
    assert {f"ledger-{version}", f"ledger_api-{version}", "tally-0.3.0", "stamp-0.2.0"} <= set(libs)
    assert [e for e in libs if e.startswith("ledger")] == [
        f"ledger-{version}",
        f"ledger_api-{version}",
    ]
    assert [e for e in entries(tarball, "releases") if e[0].isdigit()] == [version]
    root = unpack(tarball, ledger.root)
    assert loaded_version(root, "ledger_api") == version
    assert booted_version(root) == version


def test_an_auto_version_build_in_a_reused_build_dir_boots_the_new_suffix(
    tmp_path: Path,
) -> None:
    """examples/hello without its `compile --force` alias, built at 1.1.0+1.1d013c8 then at
    1.1.0+2.733a569 in the same _build: the second tarball boots 1.1.0+2.733a569."""
    directory = tmp_path / "hello"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns("_build", "deps", ".deliver"))
    mix_exs = directory / "mix.exs"
    mix_exs.write_text(mix_exs.read_text().replace("aliases: aliases()", "aliases: []"))
    env = {"HELLO_VERSION": "1.1.0"}
    asyncio.run(
        MixLocalBuilder(directory, "hello", env={**env, VERSION_SUFFIX: "1.1d013c8"}).build()
    )
    built = asyncio.run(
        MixLocalBuilder(directory, "hello", env={**env, VERSION_SUFFIX: "2.733a569"}).build()
    )
    assert built.artifact.version == "1.1.0+2.733a569" and built.tarball is not None
    assert entries(built.tarball, "lib").count("hello-1.1.0+2.733a569") == 1
    assert booted_version(unpack(built.tarball, tmp_path), "hello") == "1.1.0+2.733a569"


def test_a_dependency_that_cannot_be_fetched_is_refused_naming_it(ledger: Ledger) -> None:
    """One line names tally and git's reason; exit 1; nothing is stored."""
    missing = ledger.root / "gone.git"
    with pytest.raises(BuildFailed) as refused:
        ledger.build("1.2.0", TALLY_GIT_URL=str(missing))
    message = str(refused.value)
    assert f"fetching dependency tally ({missing}) failed: fatal: '{missing}'" in message
    assert "\n" not in message and refused.value.exit_code == 1
    assert not ledger.stored("1.2.0").parent.exists()


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ('release = "nope"', "build.release: unknown release nope; mix.exs defines: ledger, "
         "ledger_lite"),
        ("", "build.release: mix.exs defines several releases (ledger, ledger_lite); name one"),
    ],
)  # fmt: skip
def test_an_unknown_or_missing_release_name_is_refused_listing_the_known_ones(
    ledger: Ledger, release: str, expected: str
) -> None:
    """Checked before any dependency is fetched: exit 2, nothing stored."""
    config = ledger.directory / ".deliver/edeliver.toml"
    config.write_text(CONFIG.replace('release = "ledger"', release))
    try:
        with pytest.raises(UsageError) as refused:
            ledger.build("1.3.0")
    finally:
        config.write_text(CONFIG)
    assert str(refused.value) == expected and refused.value.exit_code == 2
    assert not ledger.stored("1.3.0").parent.exists()


LOCAL_STAGES = (
    "pre_git_submodules", "post_git_submodules",
    "pre_erlang_get_and_update_deps", "post_erlang_get_and_update_deps",
    "pre_erlang_clean_compile", "post_erlang_clean_compile",
)  # fmt: skip


def test_a_local_build_updates_submodules_and_fetches_deps_between_their_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path dependency as a submodule not yet checked out: the build checks it out between
    pre/post_git_submodules, then fetches tally between pre/post_erlang_get_and_update_deps."""
    for name, value in FILE_SUBMODULES.items():
        monkeypatch.setenv(name, value)
    tally, directory = bare_tally(tmp_path), ledger_copy(tmp_path, CONFIG)
    stamp_as_submodule(directory, tmp_path)
    git(directory, "submodule", "-q", "deinit", "-f", "vendor/stamp")
    tasks = directory / ".deliver/tasks"
    tasks.mkdir()
    for number, stage in enumerate(LOCAL_STAGES):
        (tasks / f"{number}_{stage}.sh").write_text(
            f"# stage: {stage}\n# where: build\n"
            "s=$([ -f vendor/stamp/mix.exs ] && echo stamp || echo no-stamp)\n"
            "t=$([ -d deps/tally ] && echo tally || echo no-tally)\n"
            f'echo "$STAGE $s $t" >> {tmp_path}/marks\n'
        )
    build_into_store(Runtime(project=directory), env=ledger_env("3.0.0", str(tally)))
    assert (tmp_path / "marks").read_text().splitlines() == [
        "pre_git_submodules no-stamp no-tally", "post_git_submodules stamp no-tally",
        "pre_erlang_get_and_update_deps stamp no-tally",
        "post_erlang_get_and_update_deps stamp tally",
        "pre_erlang_clean_compile stamp tally", "post_erlang_clean_compile stamp tally",
    ]  # fmt: skip
