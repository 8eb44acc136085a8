"""Reading the OpenSSH client config for a node: aliases, the toml's values winning, jump hosts,
and the resolved address `plan` shows."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from edeliver.adapters.local.ssh_config import resolve
from edeliver.cli.main import Runtime, app
from edeliver.core.domain.config import NodeConfig

SSH_CONFIG = """\
Host web1
  HostName 10.0.0.11
  Port 2201
  User deploy
  IdentityFile ~/.ssh/web_key
  UserKnownHostsFile /etc/edeliver/known_hosts
  ConnectTimeout 7
  ProxyJump bastion,jump@10.9.9.9:2222
Host bastion
  HostName bastion.example
  Port 2022
  User ops
Host direct
  ProxyJump none
"""


def written(tmp_path: Path) -> list[str]:
    path = tmp_path / "ssh_config"
    path.write_text(SSH_CONFIG)
    return [str(path)]


def test_an_alias_resolves_to_its_hostname_port_user_key_and_timeout(tmp_path: Path) -> None:
    """Every setting of the Host block is taken for a node that names the alias."""
    route = resolve(NodeConfig("web1", "web1", "/srv/app"), written(tmp_path))
    target = route.target
    assert (target.host, target.port, target.user) == ("10.0.0.11", 2201, "deploy")
    assert target.identity_files == (str(Path("~/.ssh/web_key").expanduser()),)
    assert target.known_hosts == ("/etc/edeliver/known_hosts",)
    assert target.connect_timeout == 7.0


def test_the_tomls_port_user_and_key_win_over_the_alias(tmp_path: Path) -> None:
    """Values written in edeliver.toml are not replaced by the ssh config's."""
    node = NodeConfig("web1", "web1", "/srv/app", port=22, user="me", identity_file="/k")
    target = resolve(node, written(tmp_path)).target
    assert (target.host, target.port, target.user, target.identity_files) == (
        "10.0.0.11", 22, "me", ("/k",)
    )  # fmt: skip


def test_proxyjump_gives_each_hop_resolved_in_order(tmp_path: Path) -> None:
    """`bastion,jump@10.9.9.9:2222`: the alias resolved, the literal hop as written."""
    route = resolve(NodeConfig("web1", "web1", "/srv/app"), written(tmp_path))
    assert [(h.name, h.address) for h in route.jumps] == [
        ("bastion", "ops@bastion.example:2022"),
        ("10.9.9.9", "jump@10.9.9.9:2222"),
    ]
    assert route.address == (
        "deploy@10.0.0.11:2201 via ops@bastion.example:2022 via jump@10.9.9.9:2222"
    )


def test_a_host_without_a_config_block_is_itself_on_port_22(tmp_path: Path) -> None:
    """No Host block and `ProxyJump none`: the name as written, port 22, no hops."""
    for host in ("plain.example", "direct"):
        route = resolve(NodeConfig("n", host, "/srv/app"), written(tmp_path))
        assert (route.target.host, route.target.port, route.jumps) == (host, 22, ())
        assert not route.target.from_config


def test_plan_shows_the_resolved_address_from_the_tomls_ssh_config(tmp_path: Path) -> None:
    """`ssh_config = "…"` in edeliver.toml, relative to the project, is what plan resolves with."""
    (tmp_path / ".deliver").mkdir()
    (tmp_path / ".deliver/ssh_config").write_text(SSH_CONFIG)
    (tmp_path / ".deliver/edeliver.toml").write_text(
        'app = "hello"\nssh_config = ".deliver/ssh_config"\n'
        '[nodes.web1]\nhost = "web1"\npath = "/srv/app"\n'
        '[environments.prod]\nnodes = ["web1"]\n'
    )
    result = CliRunner().invoke(app, ["plan", "prod"], obj=Runtime(project=tmp_path))
    assert result.exit_code == 0, result.output
    assert (
        "  web1  deploy@10.0.0.11:2201 via ops@bastion.example:2022 via jump@10.9.9.9:2222 /srv/app"
    ) in result.stdout
