"""The build's facts script, run by a real sh in a release directory, read back as facts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from edeliver.adapters.build import build_scripts as bs


def test_the_facts_script_lists_releases_libs_and_app_versions(tmp_path: Path) -> None:
    """Both .app layouts (OTP's `{vsn, "x"}` and mix's `{vsn,"x"}`) are read."""
    (tmp_path / "releases/1.1.0").mkdir(parents=True)
    (tmp_path / "releases/start_erl.data").write_text("13.1.5 1.1.0\n")
    for app, line in (("kernel-8.5.3", '  {vsn, "8.5.3"},'), ("ledger-1.1.0", '{vsn,"1.1.0"},')):
        (tmp_path / "lib" / app / "ebin").mkdir(parents=True)
        name = app.partition("-")[0]
        (tmp_path / "lib" / app / "ebin" / f"{name}.app").write_text(
            f"{{application,x,[\n{line}\n]}}.\n"
        )
    done = subprocess.run(
        ["sh", "-c", bs.facts_script()], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    facts = bs.parse_facts(done.stdout)
    assert facts.releases == ("1.1.0", "start_erl.data")
    assert facts.lib == ("kernel-8.5.3", "ledger-1.1.0")
    assert facts.vsn == {
        "lib/kernel-8.5.3/ebin/kernel.app": "8.5.3", "lib/ledger-1.1.0/ebin/ledger.app": "1.1.0",
    }  # fmt: skip
