"""The examples/ledger umbrella for build tests: a copy of it, its git dependency (tally) in a
bare repository, and what a built release says of itself, from `eval` and from a booted node."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

from edeliver.adapters.node.fleet_sshd import LOOPBACK_ONLY_ERLANG
from edeliver.adapters.node.local_host import free_ports
from tests.support.hello_release import REPO_ROOT
from tests.support.waiting import wait_for

LEDGER = REPO_ROOT / "examples" / "ledger"
TALLY = REPO_ROOT / "examples" / "deps" / "tally"
GIT_ID = ["-c", "user.name=ci", "-c", "user.email=ci@example.invalid"]
REPORT = 'for {k, v} <- Ledger.report(), do: IO.puts("#{k}=#{v}")'


def git(directory: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(directory), *GIT_ID, *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def bare_tally(where: Path) -> Path:
    """examples/deps/tally committed into a work repo, then cloned bare to where/tally.git."""
    work = where / "tally-work"
    shutil.copytree(TALLY, work)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "tally")
    bare = where / "tally.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare


def ledger_copy(where: Path, config: str = "") -> Path:
    """A git checkout of examples/ledger (without build outputs), with `config` as its
    .deliver/edeliver.toml when given."""
    directory = where / "ledger"
    outputs = shutil.ignore_patterns("_build", "deps", "mix.lock", ".deliver")
    shutil.copytree(LEDGER, directory, ignore=outputs)
    if config:
        (directory / ".deliver").mkdir()
        (directory / ".deliver/edeliver.toml").write_text(config)
    git(directory, "init", "-q", "-b", "main")
    git(directory, "add", "-A")
    git(directory, "commit", "-qm", "ledger")
    return directory


def stamp_as_submodule(directory: Path, where: Path) -> None:
    """The ledger copy's path dependency vendor/stamp made a git submodule (its own repository
    at where/stamp), committed; git must allow file:// submodules (`allow_file_submodules`)."""
    stamp = where / "stamp"
    shutil.copytree(directory / "vendor/stamp", stamp)
    git(directory, "rm", "-rq", "vendor/stamp")
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-qm", "stamp")):
        git(stamp, *args)
    git(directory, "submodule", "-q", "add", str(stamp), "vendor/stamp")
    git(directory, "commit", "-qam", "stamp as a submodule")


FILE_SUBMODULES = {  # git refuses file:// submodules by default
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "protocol.file.allow",
    "GIT_CONFIG_VALUE_0": "always",
}


def ledger_env(version: str, tally_url: str) -> dict[str, str]:
    return {"LEDGER_VERSION": version, "TALLY_GIT_URL": tally_url}


def unpack(tarball: Path, where: Path) -> Path:
    root = where / f"unpacked-{secrets.token_hex(3)}"
    root.mkdir(parents=True)
    with tarfile.open(tarball) as archive:
        archive.extractall(root, filter="tar")
    return root


def entries(tarball: Path, top: str) -> list[str]:
    """The names right below `top/` in the tarball (`releases`, `lib`)."""
    with tarfile.open(tarball) as archive:
        parts = (name.split("/") for name in archive.getnames())
        return sorted({p[1] for p in parts if len(p) > 1 and p[0] == top})


def report(root: Path, greeting: str = "from-runtime") -> dict[str, str]:
    """Ledger.report/0 of an unpacked release, by `bin/ledger eval` (runtime.exs applied)."""
    env = {"PATH": "/usr/bin:/bin", "LEDGER_GREETING": greeting, "RELEASE_DISTRIBUTION": "none"}
    done = subprocess.run(
        [str(root / "bin/ledger"), "eval", REPORT],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return dict(line.partition("=")[::2] for line in done.stdout.splitlines() if "=" in line)


def loaded_version(root: Path, app: str) -> str:
    """The vsn of `app` as the release loads it (`bin/ledger eval`, no node started)."""
    env = {"PATH": "/usr/bin:/bin", "RELEASE_DISTRIBUTION": "none"}
    asked = f"Application.load(:{app}); IO.puts(Application.spec(:{app}, :vsn))"
    done = subprocess.run(
        [str(root / "bin/ledger"), "eval", asked],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def booted_version(root: Path, app: str = "ledger", deadline_seconds: float = 60) -> str:
    """Start the release as a daemon, ask the running node its app's vsn, stop it."""
    name = f"{app}-{secrets.token_hex(4)}@127.0.0.1"
    # Its own epmd, on loopback and a free port, stopped after the node: nothing outlives it.
    env = {
        "PATH": "/usr/bin:/bin", "RELEASE_NODE": name, "RELEASE_DISTRIBUTION": "name",
        "ERL_EPMD_PORT": str(free_ports(1)[0]), **LOOPBACK_ONLY_ERLANG,
    }  # fmt: skip
    run = root / "bin" / app
    subprocess.run([str(run), "daemon"], env=env, check=True, timeout=60)
    asked = f"IO.puts(Application.spec(:{app}, :vsn))"

    def answer() -> str:
        done = subprocess.run(
            [str(run), "rpc", asked],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        return wait_for(answer, deadline_seconds, f"{name} to answer", every=0.5)
    finally:
        _stop(run, env)
        _stop_epmd(root, env)


def _stop_epmd(root: Path, env: dict[str, str]) -> None:
    """The epmd the node started on its own port (no node is registered with it any more)."""
    for epmd in root.glob("erts-*/bin/epmd"):
        subprocess.run([str(epmd), "-kill"], env=env, capture_output=True, timeout=30, check=False)


def _stop(run: Path, env: dict[str, str]) -> None:
    """Stop the node this module started: by `stop`, else its OS pid (asked before)."""
    pid = subprocess.run(
        [str(run), "pid"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    subprocess.run([str(run), "stop"], env=env, capture_output=True, timeout=60, check=False)
    if pid.returncode == 0 and pid.stdout.strip().isdigit():
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid.stdout.strip()}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if Path(f"/proc/{pid.stdout.strip()}").exists():
            os.kill(int(pid.stdout.strip()), signal.SIGKILL)
