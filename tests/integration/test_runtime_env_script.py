"""The script writing a node's runtime settings, run by a local `sh` in a deploy path whose name
has a space, a quote and a `$`: what it writes, with which modes, and that a redeploy whose
settings did not change rewrites nothing (no file replaced, no process but `chmod` started).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from edeliver.adapters.node.runtime_env_files import MISSING_FILE, write_script
from edeliver.core.domain.runtime_env import NodeRuntime

AWKWARD = 'it\'s $HOME \\n `x` "q"'
RUNTIME = NodeRuntime((("DATABASE_URL", "ecto://u:pw@db/app"), ("AWKWARD", AWKWARD)), ())


def deploy_path(tmp_path: Path) -> Path:
    path = tmp_path / "srv it's $app"
    for version in ("0.1.0", "0.2.0"):
        (path / "releases" / version / "releases").mkdir(parents=True)
        (path / "releases" / version / "releases" / "COOKIE").write_text("built-in\n")
    return path


def run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)


def sourced(path: Path, name: str) -> str:
    """What a node script that sources the env file sees in `name`."""
    env = path / "shared" / ".edeliver" / "env"
    said = run(f'. {shlex.quote(str(env))} && printf %s "${name}"')
    assert said.returncode == 0, said.stderr
    return said.stdout


def test_settings_and_cookie_are_written_private_and_reach_every_installed_release(
    tmp_path: Path,
) -> None:
    path = deploy_path(tmp_path)
    said = run(write_script(str(path), RUNTIME, "c00kie"))
    assert said.returncode == 0, said.stderr
    private = path / "shared" / ".edeliver"
    assert (private / "cookie").read_text() == "c00kie\n"
    assert sourced(path, "AWKWARD") == AWKWARD
    assert sourced(path, "DATABASE_URL") == "ecto://u:pw@db/app"
    assert sourced(path, "RELEASE_COOKIE") == "c00kie"
    assert oct(private.stat().st_mode & 0o777) == "0o700"
    assert {oct(p.stat().st_mode & 0o777) for p in private.iterdir()} == {"0o600"}
    cookies = sorted(path.glob("releases/*/releases/COOKIE"))
    assert [c.read_text() for c in cookies] == ["c00kie\n", "c00kie\n"]
    assert not list(private.glob("*.new"))


def test_a_redeploy_with_the_same_settings_replaces_no_file_and_a_changed_one_only_its_own(
    tmp_path: Path,
) -> None:
    path = deploy_path(tmp_path)
    assert run(write_script(str(path), RUNTIME, "c00kie")).returncode == 0
    files = [path / "shared/.edeliver/cookie", path / "shared/.edeliver/env"]
    files += sorted(path.glob("releases/*/releases/COOKIE"))
    before = {f: os.stat(f).st_ino for f in files}
    os.utime(files[1], (1, 1))
    assert run(write_script(str(path), RUNTIME, "c00kie")).returncode == 0
    assert {f: os.stat(f).st_ino for f in files} == before
    assert os.stat(files[1]).st_mtime == 1  # not even written in place

    changed = NodeRuntime((("DATABASE_URL", "ecto://u:pw2@db/app"),), ())
    assert run(write_script(str(path), changed, "c00kie")).returncode == 0
    assert os.stat(files[0]).st_ino == before[files[0]]  # the cookie did not change
    assert os.stat(files[1]).st_ino != before[files[1]]
    assert sourced(path, "DATABASE_URL") == "ecto://u:pw2@db/app"
    assert sourced(path, "AWKWARD") == ""  # a value no longer given is gone


def test_a_cookie_file_edited_on_the_node_is_put_back_and_a_missing_secret_stops_all(
    tmp_path: Path,
) -> None:
    path = deploy_path(tmp_path)
    assert run(write_script(str(path), RUNTIME, "c00kie")).returncode == 0
    release_cookie = path / "releases/0.1.0/releases/COOKIE"
    release_cookie.write_text("c00kie")  # no newline: differs, rewritten
    assert run(write_script(str(path), RUNTIME, "c00kie")).returncode == 0
    assert release_cookie.read_text() == "c00kie\n"

    with_file = NodeRuntime((), (("SKB", "secret_key_base"),))
    said = run(write_script(str(path), with_file, "other-cookie"))
    assert said.returncode == MISSING_FILE
    assert "shared/secret_key_base (for SKB) is missing" in said.stderr
    assert (path / "shared/.edeliver/cookie").read_text() == "c00kie\n"  # nothing written
