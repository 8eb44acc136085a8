"""Edeliver as users install it: a wheel built by the standard backend (setuptools, the project's
pyproject) from a copy of this source tree, installed into a fresh venv, runs from there; the
base install works without the optional extras, and a configuration that needs one says in one
line which to install.

The fresh venv gets the dependencies from the project's venv (a `.pth` line naming its
site-packages), so nothing but the build backend comes from the network (pip's cache or PyPI);
the extras are taken away from the installed edeliver by a `sitecustomize` that makes their
imports fail as if they were not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.one_node_project import one_node_project

SOURCE = Path(__file__).resolve().parents[2]
PACKAGE_PARTS = ("pyproject.toml", "README.md", "__init__.py", "core", "adapters", "cli")
# Makes the extras' imports fail the way a missing package does.
WITHOUT_EXTRAS = """
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"boto3", "botocore", "s3transfer", "psycopg", "psycopg_pool"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


@dataclass(frozen=True)
class Installed:
    """The built wheel and the fresh venv it was installed into."""

    wheel: Path
    venv: Path
    blocker: Path  # a directory whose sitecustomize hides the extras

    def edeliver(
        self, *args: str, cwd: Path, extras: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "edeliver"), *args, cwd=cwd, extras=extras, env=env)

    def python(self, code: str, cwd: Path, extras: bool = True) -> str:
        done = self.run(str(self.venv / "bin" / "python"), "-c", code, cwd=cwd, extras=extras)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def run(
        self, *argv: str, cwd: Path, extras: bool, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("EDELIVER_", "PYTHON"))}
        if not extras:
            clean["PYTHONPATH"] = str(self.blocker)
        return subprocess.run(
            argv,
            check=False,
            cwd=cwd,
            env={**clean, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel of a copy of this tree, installed (without dependencies) into a fresh venv."""
    root = tmp_path_factory.mktemp("packaging")
    source = _copy_of_the_source(root / "source")
    _pip("wheel", str(source), "--no-deps", "--wheel-dir", str(root / "dist"))
    (wheel,) = (root / "dist").glob("edeliver-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    _pip("--python", str(venv / "bin" / "python"), "install", "--no-deps", str(wheel))
    (_site_packages(venv) / "project_dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    blocker = root / "without_extras"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(WITHOUT_EXTRAS)
    return Installed(wheel, venv, blocker)


def _copy_of_the_source(target: Path) -> Path:
    """What the build reads, without caches, venvs or build dirs of this checkout."""
    target.mkdir()
    for part in PACKAGE_PARTS:
        if (SOURCE / part).is_dir():
            shutil.copytree(
                SOURCE / part, target / part, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(SOURCE / part, target / part)
    return target


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True, timeout=300)


def _site_packages(venv: Path) -> Path:
    (path,) = (venv / "lib").glob("python3*/site-packages")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory with a one-node configuration."""
    return one_node_project(tmp_path)


def test_the_wheel_holds_every_package_and_the_elixir_scripts(installed: Installed) -> None:
    """core, adapters and cli are in the wheel with the .exs files the builds evaluate."""
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for module in ("__init__.py", "core/domain/config.py", "adapters/node/ssh.py", "cli/main.py"):
        assert f"edeliver/{module}" in names
    assert {
        "edeliver/adapters/build/build_tasks.exs",
        "edeliver/adapters/build/upgrade_relup.exs",
    } <= names
    assert not [name for name in names if name.startswith(("edeliver/tests", "edeliver/bench"))]


def test_boto3_and_psycopg_are_required_only_by_their_extras(installed: Installed) -> None:
    """The wheel's metadata asks for boto3 only with [s3] and psycopg only with [postgres]."""
    with zipfile.ZipFile(installed.wheel) as wheel:
        (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        lines = wheel.read(metadata).decode().splitlines()
    requires = [line.removeprefix("Requires-Dist: ") for line in lines if "Requires-Dist" in line]
    assert {"Provides-Extra: s3", "Provides-Extra: postgres"} <= set(lines)
    for library, extra in (("boto3", "s3"), ("psycopg", "postgres")):
        mine = [r for r in requires if r.startswith(library)]
        assert mine and all(f'extra == "{extra}"' in r for r in mine), requires


def test_the_installed_edeliver_runs_from_the_venv_not_from_this_checkout(
    installed: Installed, tmp_path: Path
) -> None:
    """`edeliver --version` answers, and the package it imports is the installed copy."""
    done = installed.edeliver("--version", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "edeliver 2.0.0.dev0"
    where = installed.python(
        "import edeliver.adapters; print(edeliver.adapters.__file__)", tmp_path
    )
    assert Path(where).is_relative_to(installed.venv)
    script = installed.python(
        "from importlib.resources import files; "
        "text = files('edeliver.adapters.build').joinpath('build_tasks.exs').read_text(); "
        "print(text.count('defmodule Mix.Tasks'))",
        tmp_path,
    )
    assert int(script) >= 1


def test_plan_works_on_the_base_install_without_the_extras(
    installed: Installed, project: Path
) -> None:
    """With boto3 and psycopg not importable, `edeliver plan` of a local-store project works."""
    done = installed.edeliver("plan", "prod", cwd=project, extras=False)
    assert done.returncode == 0, done.stderr
    assert "web1" in done.stdout and "10.0.0.11" in done.stdout
    assert "boto3" not in done.stderr


def test_an_s3_store_without_the_s3_extra_is_one_line_naming_the_extra(
    installed: Installed, project: Path
) -> None:
    """`store.url = s3://…` without boto3: exit 2 and one line saying what to pip install."""
    one_node_project(project, before='[store]\nurl = "s3://releases/hello"\n')
    done = installed.edeliver("releases", cwd=project, extras=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "edeliver: .deliver/edeliver.toml: store.url: an S3 store needs boto3, which is not "
        "installed: pip install 'edeliver[s3]'"
    ]


def test_a_postgresql_event_store_without_the_postgres_extra_is_one_line_naming_the_extra(
    installed: Installed, project: Path
) -> None:
    """`EDELIVER_EVENTS=postgresql://…` without psycopg: exit 2, one line, nothing created."""
    url = {"EDELIVER_EVENTS": "postgresql://deploy@127.0.0.1:1/events"}
    done = installed.edeliver("history", cwd=project, extras=False, env=url)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "edeliver: EDELIVER_EVENTS: a PostgreSQL event store needs psycopg, which is not "
        "installed: pip install 'edeliver[postgres]'"
    ]
    assert sorted(p.name for p in (project / ".deliver").iterdir()) == ["edeliver.toml"]
