"""The examples/hello release: real `mix release` builds and real BEAM nodes on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edeliver.adapters.node.fleet_sshd import LOOPBACK_ONLY_ERLANG
from tests.support.hello_release import tarball

pytestmark = pytest.mark.slow


@dataclass
class Node:
    """One unpacked release with its own epmd port."""

    root: Path
    epmd_port: int

    def hello(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **LOOPBACK_ONLY_ERLANG, "ERL_EPMD_PORT": str(self.epmd_port)}
        return subprocess.run(
            [str(self.root / "bin" / "hello"), *args],
            check=False,
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def rpc(self, expression: str) -> str:
        done = self.hello("rpc", expression)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    @property
    def status_file(self) -> Path:
        return self.root / "tmp" / "hello.status"

    def beam_pids(self) -> list[int]:
        """OS pids of BEAM VMs running from this root (there is at most one)."""
        marker = f"\0-root\0{self.root}\0".encode()
        return [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/cmdline") if _has(p, marker)]


def _has(cmdline: Path, marker: bytes) -> bool:
    try:
        return b"beam" in cmdline.read_bytes() and marker in cmdline.read_bytes()
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def unpack(tmp_path: Path) -> Iterator[Callable[[Path], Node]]:
    """Unpack a tarball into its own dir with its own epmd; stop all it started afterwards."""
    started: list[tuple[Node, subprocess.Popen[bytes]]] = []

    def _unpack(package: Path) -> Node:
        root = tmp_path / f"node{len(started)}"
        with tarfile.open(package) as tar:
            tar.extractall(root, filter="tar")
        node = Node(root, _free_port())
        epmd = next(root.glob("erts-*/bin/epmd"))
        started.append((node, subprocess.Popen([str(epmd), "-port", str(node.epmd_port)])))
        assert _wait_for(lambda: _listening(node.epmd_port), 5)
        return node

    yield _unpack
    _stop(*(node for node, _ in started))
    for _, epmd in started:
        epmd.terminate()
        epmd.wait(5)


def _stop(*nodes: Node) -> None:
    """Stop gracefully (all at once: each takes ~2 s), kill what is still up after 10 s."""
    for node in nodes:
        if node.beam_pids():
            node.hello("stop")
    if not _wait_for(lambda: not any(n.beam_pids() for n in nodes), 10):
        for pid in (pid for node in nodes for pid in node.beam_pids()):
            os.kill(pid, 9)


@pytest.fixture(scope="session")
def v1_package() -> Path:
    return tarball("0.1.0", "good")


@pytest.fixture(scope="session")
def broken_package() -> Path:
    return tarball("0.3.0", "broken")


def test_the_tarball_holds_the_release_root_without_dot_prefixes(v1_package: Path) -> None:
    """Top-level entries are bin/, erts-*/, lib/, releases/, none starting with `./`."""
    with tarfile.open(v1_package) as tar:
        names = tar.getnames()
    assert {n.split("/")[0] for n in names} == {"bin", "erts-13.1.5", "lib", "releases"}
    assert "releases/0.1.0/hello.rel" in names
    assert not [n for n in names if n.startswith("./")]


def test_v1_boots_reports_its_version_and_counts(
    unpack: Callable[[Path], Node], v1_package: Path
) -> None:
    """A v1 node answers rpc with 0.1.0, keeps a count, writes and removes its status file."""
    node = unpack(v1_package)
    assert node.hello("daemon").returncode == 0
    assert _wait_for(node.status_file.exists, 15)
    assert node.rpc("IO.puts(Hello.version())") == "0.1.0"
    assert [node.rpc("IO.puts(Hello.Counter.bump())") for _ in range(2)] == ["1", "2"]
    assert node.rpc("IO.puts(Hello.Counter.value())") == "2"
    os_pid, name = node.rpc('IO.puts("#{System.pid()} #{node()}")').split()
    assert node.status_file.read_text() == f"pid={os_pid}\nversion=0.1.0\nnode={name}\n"
    _stop(node)
    assert not node.beam_pids()
    assert not node.status_file.exists()


def test_two_nodes_with_the_same_name_are_told_apart_by_epmd_port(
    unpack: Callable[[Path], Node], v1_package: Path
) -> None:
    """Two hello@host nodes on one machine: each ERL_EPMD_PORT reaches its own node."""
    nodes = [unpack(v1_package), unpack(v1_package)]
    for node in nodes:
        assert node.hello("daemon").returncode == 0
    assert _wait_for(lambda: all(n.status_file.exists() for n in nodes), 15)
    answers = [node.rpc('IO.puts("#{node()} #{:code.root_dir()}")').split() for node in nodes]
    assert [root for _, root in answers] == [str(node.root) for node in nodes]
    assert answers[0][0] == answers[1][0] == f"hello@{socket.gethostname().split('.')[0]}"


def test_the_broken_build_does_not_stay_up(
    unpack: Callable[[Path], Node], broken_package: Path
) -> None:
    """The broken variant starts a VM that exits within seconds and never writes a status file."""
    node = unpack(broken_package)
    assert node.hello("daemon").returncode == 0
    assert _wait_for(lambda: bool(node.beam_pids()), 5)
    assert _wait_for(lambda: not node.beam_pids(), 10)
    assert node.hello("rpc", "IO.puts(:ok)").returncode != 0
    assert not node.status_file.exists()
    assert "broken_on_purpose" in (node.root / "tmp" / "log" / "erlang.log.1").read_text()
