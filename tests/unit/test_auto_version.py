"""Auto-versioning: `[build] auto_version`, the build metadata it makes, and version order."""

from __future__ import annotations

import pytest

from edeliver.adapters.build import build_scripts as bs
from edeliver.core.domain.auto_version import version_suffix
from edeliver.core.domain.config_parser import parse_config
from edeliver.core.domain.errors import ConfigError
from edeliver.core.domain.versions import version_key

NODE = '[nodes.a]\nhost = "h"\npath = "/srv"\n[environments.prod]\nnodes = ["a"]\n'
FACTS = {"commit_count": "118", "revision": "3f9c2ab", "branch": "feature/login", "date": "x"}


def test_the_parts_are_appended_in_the_order_given_as_semver_identifiers() -> None:
    assert version_suffix(["commit_count", "revision"], FACTS) == "118.3f9c2ab"
    assert version_suffix(["branch", "commit_count"], FACTS) == "feature-login.118"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('["revision", "sha"]', "expected some of commit_count, revision, branch, date, got 'sha'"),
        ('["revision", "revision"]', "names a part twice"),
        ('"revision"', "expected a list of strings"),
    ],
)
def test_bad_auto_version_settings_name_the_key(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"edeliver.toml: build.auto_version: .*{problem}"):
        parse_config(f"[build]\nauto_version = {value}\n{NODE}", "edeliver.toml")


def test_auto_version_applies_to_every_build_strategy() -> None:
    text = '[build]\nstrategy = "docker"\nimage = "i"\nauto_version = ["date"]\n' + NODE
    assert parse_config(text, "edeliver.toml").build.auto_version == ("date",)


def test_versions_with_build_metadata_sort_by_their_numbers() -> None:
    versions = ["0.1.0+10.abc", "0.1.0+9.def", "0.2.0", "0.1.0", "0.10.0"]
    assert sorted(versions, key=version_key) == [
        "0.1.0", "0.1.0+9.def", "0.1.0+10.abc", "0.2.0", "0.10.0",
    ]  # fmt: skip


def test_every_mix_run_goes_through_edeliver_s_build_tasks() -> None:
    """The tasks are loaded first; the suffix task is a no-op when no suffix is set."""
    versioned = bs.release_argv(bs.PROD, "t.exs", "out")
    assert versioned == [
        "elixir", "-r", "t.exs", "-S", "mix", "do", "edeliver.version,",
        "release", "--path", "out", "--overwrite",
    ]  # fmt: skip
    script = bs.build_script({bs.VERSION_SUFFIX: "1.abc"})
    assert "defmodule Mix.Tasks.Edeliver.Version" in script
    assert "-S mix do edeliver.version, release --path _edeliver/release" in script
