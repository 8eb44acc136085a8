"""What every build checks of its tarball, and the one line a failed deps.get becomes (pure).

The facts script run by a real sh: tests/integration/test_build_facts_script.py.
"""

from __future__ import annotations

import pytest

from edeliver.adapters.build import build_scripts as bs
from edeliver.adapters.build.build_checks import BuildFailed, check_contents, deps_failed
from edeliver.core.domain.errors import UsageError
from edeliver.core.domain.model import Platform

GOOD = bs.BuildFacts(
    "1.1.0", "13.1.5", "25", "1.14.0", Platform("linux", "x86_64", "glibc", "2.36"),
    releases=("1.1.0", "COOKIE", "RELEASES", "start_erl.data"),
    lib=("kernel-8.5.3", "ledger-1.1.0", "tally-0.3.0"),
    vsn={"lib/ledger-1.1.0/ebin/ledger.app": "1.1.0", "lib/kernel-8.5.3/ebin/kernel.app": "8.5.3"},
)  # fmt: skip


def _with(**changes: object) -> bs.BuildFacts:
    return bs.BuildFacts(**{**GOOD.__dict__, **changes})  # type: ignore[arg-type]


def test_a_release_holding_only_its_own_version_passes() -> None:
    """The facts of a clean build raise nothing."""
    check_contents("ledger", GOOD)
    check_contents(
        "ledger", _with(version="1.1.0+2.abc", releases=("1.1.0+2.abc",), vsn={}), "2.abc"
    )


@pytest.mark.parametrize(
    ("facts", "message"),
    [
        (_with(releases=("1.0.0", "1.1.0", "start_erl.data")), "also holds releases/1.0.0"),
        (
            _with(lib=("ledger-1.0.0", "ledger-1.1.0")),
            r"several versions of one app \(lib/ledger-1.0.0, lib/ledger-1.1.0\)",
        ),
        (
            _with(vsn={"lib/ledger-1.0.0/ebin/ledger.app": "1.0.0"}),
            "ledger 1.1.0 release holds lib/ledger-1.0.0/ebin/ledger.app of version 1.0.0",
        ),
        (
            _with(vsn={"lib/tally-0.3.0/ebin/tally.app": "0.2.0"}),
            "tally.app of version 0.2.0",
        ),
        (_with(version=""), "no releases/start_erl.data"),
    ],
)
def test_a_release_with_another_version_inside_is_refused_naming_both(
    facts: bs.BuildFacts, message: str
) -> None:
    """Stale releases/ or lib/ dirs and a .app of another vsn are refused: not stored."""
    with pytest.raises(BuildFailed, match=message):
        check_contents("ledger", facts)


def test_an_auto_version_build_without_its_suffix_is_refused() -> None:
    """A release that booted the previous build's version is caught by its missing suffix."""
    with pytest.raises(BuildFailed, match=r"lacks the auto_version suffix 2\.733a569"):
        check_contents("ledger", _with(vsn={}), "2.733a569")


GIT_FAILURE = """\
* Getting tally (/tmp/x/tally.git)
fatal: '/tmp/x/tally.git' does not appear to be a git repository
fatal: Could not read from remote repository.
** (Mix) Command "git --git-dir=.git fetch --force --quiet --progress" failed
"""


def test_a_dependency_that_cannot_be_fetched_is_one_line_naming_it_and_why() -> None:
    """The dependency from mix's `* Getting` line, the reason from git's first error."""
    error = deps_failed("build host b@h:22", GIT_FAILURE)
    assert isinstance(error, BuildFailed)
    assert str(error) == (
        "build host b@h:22: fetching dependency tally (/tmp/x/tally.git) failed: "
        "fatal: '/tmp/x/tally.git' does not appear to be a git repository"
    )
    cached = deps_failed("here", GIT_FAILURE.replace("* Getting", "* Updating"))
    assert "fetching dependency tally (/tmp/x/tally.git) failed: fatal:" in str(cached)


def test_an_unknown_release_name_is_a_usage_error_listing_the_known_ones() -> None:
    """Mix.Tasks.Edeliver.Release's line becomes the whole message (exit 2)."""
    log = "** (Mix) edeliver: build.release: unknown release nope; mix.exs defines: ledger, lite\n"
    error = deps_failed("here", log)
    assert isinstance(error, UsageError)
    assert str(error) == "build.release: unknown release nope; mix.exs defines: ledger, lite"


def test_a_deps_get_that_failed_for_another_reason_is_left_to_the_build_s_log_tail() -> None:
    """mix.exs raising is not a dependency failure: no line is made up."""
    assert deps_failed("here", '** (Mix.Error) HELLO_VARIANT must be "good"\n') is None


def test_the_build_exports_the_configured_mix_env_and_names_the_release() -> None:
    """MIX_ENV and the release name reach every part of the build, quoted."""
    script = bs.build_script({}, bs.MixTarget("staging", "ledger"))
    assert script.count("export MIX_ENV=staging\n") == 3
    assert "edeliver.release ledger, deps.get --only staging" in script
    assert "release ledger --path _edeliver/release" in script
