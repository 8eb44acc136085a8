"""An edeliver 1.x project on real nodes: a copy of examples/hello with a `.deliver/config`
whose PRODUCTION_HOSTS are `~/.ssh/config` aliases (own ports, own keys) behind a bastion.

The fleet's node1 is the bastion, node2 and node3 the app nodes `web1` and `web2`; node3 only
accepts a key of its own. HOME is a temp dir holding `.ssh/config` and `.ssh/known_hosts`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edeliver.adapters.build.mix_build import local_platform
from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.local_host import write_key_pair
from edeliver.adapters.store.local_store import LocalDirectoryStore
from edeliver.core.domain.model import Artifact
from tests.support.hello_release import tarball

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello"
EDELIVER = [sys.executable, "-m", "edeliver.cli"]
ALIASES = {"node2": "web1", "node3": "web2"}
# The hooks leave their marks on every node through 1.x's `__remote`, and say so with `status`;
# one asks the running release its version through 1.x's path to its script.
LEGACY_CONFIG = """\
APP="hello"
PRODUCTION_HOSTS="{hosts}"
DELIVER_TO="/srv"
RELEASE_STORE=".deliver/releases"
USING_DISTILLERY=false

post_extract_release_archive() {{
  __remote "echo extracted-$VERSION >> $DELIVER_TO/hello/legacy-marks"
}}
pre_start_deployed_release() {{
  status "starting hello on $HOSTS"
  __remote "echo starting-$VERSION >> $DELIVER_TO/hello/legacy-marks"
}}
post_start_deployed_release() {{
  __remote "echo \\"$VERSION\\" >> $DELIVER_TO/hello/legacy-marks"
  __remote "$DELIVER_TO/$APP/bin/$APP rpc 'IO.puts(Hello.version())' >> $DELIVER_TO/$APP/legacy-rpc"
}}
"""


@dataclass
class LegacyProject:
    directory: Path
    home: Path
    fleet: LocalFleet

    @property
    def ssh_config(self) -> Path:
        return self.home / ".ssh" / "config"

    @property
    def known_hosts(self) -> Path:
        return self.home / ".ssh" / "known_hosts"

    @property
    def app_nodes(self) -> list[FleetNode]:
        return [self.fleet.node(name) for name in ALIASES]

    def edeliver(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "EDELIVER_EVENTS"}
        return subprocess.run(
            [*EDELIVER, "-C", str(self.directory), *args],
            capture_output=True, text=True, timeout=timeout, check=False,
            env={**env, "HOME": str(self.home)},
        )  # fmt: skip

    def write_legacy_config(self, hosts: str = "web1 web2") -> None:
        (self.directory / ".deliver/config").write_text(LEGACY_CONFIG.format(hosts=hosts))

    def trust_all(self) -> None:
        self.fleet.write_known_hosts(self.known_hosts)

    def on_node(self, alias: str, command: str) -> subprocess.CompletedProcess[str]:
        """Run `command` on a node with OpenSSH itself, through the same ssh config."""
        return subprocess.run(
            ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", alias, command],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def node_state(self, alias: str) -> tuple[str | None, str, bool]:
        """(running version, where `current` points, whether it is a complete release)."""
        said = self.on_node(
            alias,
            "cd /srv/hello && readlink current; test -x current/bin/hello && "
            "test -d current/releases && echo complete; "
            "cd current 2>/dev/null && bin/hello rpc 'IO.puts(Hello.version())' || echo none",
        )
        lines = said.stdout.split()
        complete = "complete" in lines
        running = lines[-1] if lines and lines[-1] != "none" else None
        current = lines[0] if lines and lines[0] not in ("complete", "none") else ""
        return running, current, complete


@contextmanager
def legacy_project(root: Path) -> Iterator[LegacyProject]:
    """The 1.x project on a 3-node fleet of its own (bastion, web1, web2), stopped afterwards."""
    fleet = LocalFleet(root / "fleet", 3)
    fleet.start()
    try:
        yield make_legacy_project(root, fleet)
    finally:
        fleet.stop()


def make_legacy_project(root: Path, fleet: LocalFleet) -> LegacyProject:
    """The hello example as a 1.x project, its store holding 0.1.0 and 0.2.0, its nodes' SSH
    settings only in HOME's ssh config."""
    directory = root / "hello"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns("_build", "deps", ".deliver"))
    (directory / ".deliver").mkdir()
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    project = LegacyProject(directory, home, fleet)
    own_key = _give_node_its_own_key(fleet, "node3", home / ".ssh" / "web2_key")
    project.ssh_config.write_text(_ssh_config(fleet, project.known_hosts, own_key))
    project.trust_all()
    project.write_legacy_config()
    store = LocalDirectoryStore(directory / ".deliver/releases")
    for version in ("0.1.0", "0.2.0"):
        asyncio.run(
            store.put(
                tarball(version), Artifact("hello", version, "", 0, platform=local_platform())
            )
        )
    return project


def _give_node_its_own_key(fleet: LocalFleet, name: str, key: Path) -> Path:
    """Only `key` opens the node from now on: the fleet's shared client key no longer does."""
    public = write_key_pair(key, f"{name} own key")
    (fleet.node(name).home / ".ssh" / "authorized_keys").write_text(public + "\n")
    return key


def _ssh_config(fleet: LocalFleet, known_hosts: Path, web2_key: Path) -> str:
    bastion = fleet.node("node1")
    blocks = [
        _host("bastion", bastion, fleet.client_key, known_hosts),
        _host("web1", fleet.node("node2"), fleet.client_key, known_hosts, "bastion"),
        _host("web2", fleet.node("node3"), web2_key, known_hosts, "bastion"),
    ]
    return "".join(blocks)


def _host(alias: str, node: FleetNode, key: Path, known: Path, jump: str = "") -> str:
    # Absolute paths: OpenSSH expands ~ to the passwd home, not to the test's HOME.
    return (
        f"Host {alias}\n  HostName {node.host}\n  Port {node.port}\n  User {node.user}\n"
        f"  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n"
        + (f"  ProxyJump {jump}\n" if jump else "")
    )
