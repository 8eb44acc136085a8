"""The build script that build hosts and containers run, with an auto-version suffix, on a real
copy of examples/hello: the release it packs carries the suffixed version."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from edeliver.adapters.build import build_scripts as bs
from edeliver.cli.demo import EXAMPLE


def test_the_build_script_builds_the_suffixed_version(tmp_path: Path) -> None:
    sources = tmp_path / "hello"
    shutil.copytree(EXAMPLE, sources, ignore=shutil.ignore_patterns("_build", "deps", ".deliver"))
    env = {"HELLO_VERSION": "0.8.0", bs.VERSION_SUFFIX: "7.abc1234", "HEX_OFFLINE": "1"}
    done = subprocess.run(
        ["sh", "-c", bs.build_script(env)], cwd=sources, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert bs.parse_facts(done.stdout).version == "0.8.0+7.abc1234"
    assert (sources / bs.OUT / "release/releases/0.8.0+7.abc1234").is_dir()
    assert 'System.get_env("HELLO_VERSION", "0.1.0")' in (sources / "mix.exs").read_text()
