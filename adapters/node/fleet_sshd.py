"""What each local fleet node is started from: its user, its keys, its sshd_config and the
script that is its pid 1. Written once by `LocalFleet.start()`, before any process runs.
"""

from __future__ import annotations

import os
import pwd
import shlex
from dataclasses import replace
from pathlib import Path

from edeliver.adapters.node.fleet_inventory import FleetNode, NodeFiles
from edeliver.adapters.node.local_host import (
    HOST,
    FleetError,
    ensure_user,
    fingerprint,
    write_key_pair,
)

SSHD = "/usr/sbin/sshd"
USER_PREFIX = "edfleet-"
LOOPBACK_ONLY_ERLANG = {
    "ERL_EPMD_ADDRESS": "127.0.0.1",
    "ERL_AFLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
}
_LOOPBACK_SETENV = " ".join(f'{name}="{value}"' for name, value in LOOPBACK_ONLY_ERLANG.items())


def prepare_node(
    name: str, files: NodeFiles, deploy_path: str, port: int, epmd_port: int
) -> FleetNode:
    """The node's user (created once, reused) and a fresh host key, as the node clients see."""
    files.base.mkdir(parents=True, exist_ok=True)
    user = ensure_user(USER_PREFIX + name)
    public = write_key_pair(files.host_key, f"{name} host key")
    return FleetNode(
        name=name, host=HOST, port=port, user=user.pw_name, path=deploy_path,
        root=files.deploy, home=files.home, epmd_port=epmd_port,
        host_public_key=public, host_key_fingerprint=fingerprint(public),
    )  # fmt: skip


def new_host_key(node: FleetNode, files: NodeFiles) -> FleetNode:
    """The node with a fresh host key written over its old one (sshd reads it on start)."""
    public = write_key_pair(files.host_key, f"{node.name} host key")
    return replace(node, host_public_key=public, host_key_fingerprint=fingerprint(public))


def write_node_files(node: FleetNode, files: NodeFiles, client_public: str) -> None:
    """The client's key authorised for the node's user, its sshd_config and its init.sh."""
    user = pwd.getpwnam(node.user)
    ssh_dir = files.home / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(client_public + "\n")
    files.deploy.mkdir(exist_ok=True)
    for path in (files.deploy, files.home, ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, user.pw_uid, user.pw_gid)
    files.config.write_text(sshd_config(node, files))
    files.init.write_text(init_script(node, files, user.pw_dir))


def init_script(node: FleetNode, files: NodeFiles, user_home: str) -> str:
    q = shlex.quote
    return (
        "#!/bin/sh\n"
        f"# pid 1 of fleet node {node.name}: private mounts, sshd, then reap like init.\n"
        "trap 'exit 0' TERM\n"
        "set -e\n"
        f"mount --bind {q(str(files.deploy))} {q(node.path)}\n"
        f"mount --bind {q(str(files.home))} {q(user_home)}\n"
        f"{shlex.join(sshd_argv(files))}\n"
        "set +e\n"
        "# wait reaps any child, so adopted orphans (BEAM daemons, epmd) leave no zombies.\n"
        "while :; do sleep 2147483647 & wait $!; done\n"
    )


def sshd_argv(files: NodeFiles) -> list[str]:
    # Not -D: sshd daemonises, so pid 1 of the node adopts and reaps it.
    return [SSHD, "-f", str(files.config), "-E", str(files.log)]


def sshd_config(node: FleetNode, files: NodeFiles) -> str:
    def quoted(path: Path) -> str:
        if '"' in str(path) or "\n" in str(path):
            raise FleetError(f"path not usable in sshd_config: {path}")
        return f'"{path}"'

    return (
        f"# edeliver local fleet node {node.name} (generated)\n"
        f"Port {node.port}\nListenAddress {HOST}\n"
        f"HostKey {quoted(files.host_key)}\nPidFile {quoted(files.pid_file)}\n"
        # Relative to the home, which is the node's private (fleet-owned) home dir.
        "AuthorizedKeysFile .ssh/authorized_keys\n"
        f"AllowUsers {node.user}\n"
        # PAM would reject the '*' password of the fleet users; StrictModes the tmp dirs.
        "UsePAM no\nStrictModes no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n"
        "PrintMotd no\nPrintLastLog no\nX11Forwarding no\n"
        "Subsystem sftp internal-sftp\n"
        # One epmd per node, so one BEAM node name can run on every node at once.
        # Test hosts share this machine's network: epmd and Erlang distribution listen on
        # loopback only, never on the machine's other addresses. sshd takes the first SetEnv
        # line only, so every variable goes on it.
        f"SetEnv ERL_EPMD_PORT={node.epmd_port} {_LOOPBACK_SETENV}\n"
        # MaxSessions / MaxStartups stay at sshd's defaults: the product must respect them.
    )
