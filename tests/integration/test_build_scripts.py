"""The build-side script and its parsers (pure): quoting, facts, the upload report."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edeliver.adapters.build import build_scripts as bs
from edeliver.adapters.node import install_scripts
from edeliver.adapters.node import node_scripts as ns
from edeliver.core.domain.model import Platform


def sh(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", script], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_facts_are_parsed_into_the_manifest_fields() -> None:
    output = (
        "version=0.4.0\nerts=13.1.5\notp=25\nelixir=1.14.0\nos=Linux\narch=x86_64\n"
        "getconf=glibc 2.36\nldd=ldd (Debian GLIBC 2.36-9+deb12u4) 2.36 \n"
    )
    facts = bs.parse_facts(output)
    assert (facts.version, facts.erts, facts.otp, facts.elixir) == (
        "0.4.0",
        "13.1.5",
        "25",
        "1.14.0",
    )
    assert facts.platform == Platform("linux", "x86_64", "glibc", "2.36")


def test_env_values_reach_the_build_quoted_and_bad_names_are_refused(tmp_path: Path) -> None:
    """A value with quotes and `$(...)` arrives as written; it is never run."""
    script = bs.build_script({"HELLO_VERSION": "1.0 $(touch pwned) 'x'"})
    exports = "".join(line + "\n" for line in script.splitlines() if line.startswith("export"))
    shown = sh(exports + 'printf %s "$HELLO_VERSION"', tmp_path)
    assert shown.stdout == "1.0 $(touch pwned) 'x'" and not (tmp_path / "pwned").exists()
    with pytest.raises(ValueError, match="not an environment variable name"):
        bs.build_script({"A;rm -rf /": "x"})


def test_the_facts_script_reads_a_release_root(tmp_path: Path) -> None:
    (tmp_path / "releases").mkdir()
    (tmp_path / "releases/start_erl.data").write_text("13.1.5 0.7.0\n")
    done = sh(bs.facts_script(), tmp_path)
    facts = bs.parse_facts(done.stdout)
    assert (facts.version, facts.erts) == ("0.7.0", "13.1.5") and facts.platform.os == "linux"


def test_the_upload_report_gives_checksum_and_size(tmp_path: Path) -> None:
    (tmp_path / bs.OUT).mkdir()
    (tmp_path / bs.TARBALL).write_bytes(b"12345")
    done = sh(bs.upload_script("true"), tmp_path)
    sha256, size = bs.parse_upload(done.stdout)
    assert (
        size == 5 and sha256 == "5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5"
    )
    failed = sh(bs.upload_script("false"), tmp_path)
    assert failed.returncode == 7 and "putting the release into the store failed" in failed.stderr


def test_a_failing_fetch_leaves_no_partial_upload(tmp_path: Path) -> None:
    """Pull mode: the node's fetch command fails; nothing half-fetched stays behind."""
    layout = ns.Layout(str(tmp_path), "hello")
    failed = sh(install_scripts.fetch_script(layout, "1.0.0", "echo partial; false"), tmp_path)
    assert failed.returncode == 7 and not list((tmp_path / ".edeliver/uploads").iterdir())
    ok = sh(install_scripts.fetch_script(layout, "1.0.0", "printf bytes"), tmp_path)
    assert ok.returncode == 0
    assert (tmp_path / ".edeliver/uploads/hello-1.0.0.tar.gz.partial").read_text() == "bytes"
