"""edeliver.toml parsing: a valid file yields settings; each kind of bad input a precise error."""

from __future__ import annotations

import pytest

from edeliver.adapters.node.node_scripts import ReleaseCommands
from edeliver.adapters.node.ssh import AsyncsshNodeShells, NodeTimeouts
from edeliver.adapters.settings import node_timeouts, release_commands
from edeliver.core.domain.config import Policy
from edeliver.core.domain.config_parser import parse_config
from edeliver.core.domain.errors import ConfigError, NotFoundError

FILE = ".deliver/edeliver.toml"
VALID = """
app = "hello"
[store]
url = "s3://releases-bucket/hello"
[build]
strategy = "local"
[nodes.web1]
host = "10.0.0.11"
user = "deploy"
path = "/opt/hello"
labels = ["prod", "eu"]
[nodes.web2]
host = "10.0.0.12"
port = 2222
path = "/opt/hello/"
labels = ["prod"]
[nodes.stage1]
host = "10.0.1.1"
path = "/opt/hello"
labels = ["staging"]
[environments.prod]
labels = ["prod"]
strategy = "rest_for_one"
fallback = "stop"
max_parallel = 1
max_failures = 2
[environments.staging]
nodes = ["stage1"]
"""


def test_a_valid_file_gives_its_settings() -> None:
    """Nodes, environments and their policies come out as written, with defaults filled in."""
    config = parse_config(VALID, FILE)
    assert config.app == "hello" and config.store.kind == "s3"
    assert config.nodes["web2"].port == 2222 and config.nodes["web2"].path == "/opt/hello"
    assert config.nodes["web1"].port is None and config.nodes["web1"].user == "deploy"
    prod = config.environment("prod")
    assert prod.nodes == ("web1", "web2")
    assert prod.policy == Policy("rest_for_one", "stop", max_parallel=1, max_failures=2)
    staging = config.environment("staging")
    assert staging.policy == Policy("one_for_all", "rollback") and staging.mode == "release"


def test_an_empty_file_means_the_local_store_and_no_environments() -> None:
    """Defaults: the store is .deliver/releases, a local directory."""
    config = parse_config("", FILE)
    assert (config.store.url, config.store.kind) == (".deliver/releases", "local")
    assert config.environments == {}


def test_store_urls_are_recognised() -> None:
    """Local paths, user@host:/path and s3://bucket/prefix are the three kinds of store."""
    for url, kind in [
        ("releases", "local"),
        ("/srv/releases", "local"),
        ("deploy@store.example:/srv/releases", "ssh"),
        ("s3://my-bucket", "s3"),
    ]:
        assert parse_config(f'[store]\nurl = "{url}"', FILE).store.kind == kind


def test_release_commands_replace_only_the_defaults_they_name() -> None:
    """[commands] overrides start / stop / health templates; the rest keep the mix defaults."""
    config = parse_config('[commands]\nhealth = "test -f tmp/{app}.status"\n', FILE)
    commands = release_commands(config)
    assert commands.health == "test -f tmp/{app}.status"
    assert (commands.start, commands.stop) == (ReleaseCommands().start, ReleaseCommands().stop)
    assert commands.render(commands.health, "hello") == "test -f tmp/hello.status"
    braces = ReleaseCommands(health="""curl -fs localhost:${PORT}/up | grep -q '{"ok":true}'""")
    assert braces.render(braces.health, "hello") == braces.health


def test_an_unknown_environment_lists_the_defined_ones() -> None:
    with pytest.raises(NotFoundError, match=r"no environment 'qa' \(defined: prod, staging\)"):
        parse_config(VALID, FILE).environment("qa")


def test_hosts_may_be_names_and_ipv4_or_ipv6_addresses() -> None:
    """Host names, ssh config Host aliases, IPv4 and bare IPv6 addresses (a zone included) are
    accepted as written."""
    for host in ("web-1.example.com", "web_1", "10.0.0.12", "::1", "fe80::1%eth0", "2001:db8::22"):
        config = parse_config(_with('host = "10.0.0.12"', f'host = "{host}"'), FILE)
        assert config.nodes["web2"].host == host


def test_verify_and_command_timeouts_derive_from_the_step_timeout() -> None:
    """Unset, a VM may take most of a step to come up and a script a whole step; set, as given."""
    derived = parse_config(_with("max_parallel = 1", "max_parallel = 1\nstep_timeout = 50"), FILE)
    assert derived.environment("prod").verify_seconds == 40.0
    assert derived.environment("prod").command_seconds == 50.0
    assert parse_config(VALID, FILE).environment("staging").verify_seconds == 240.0
    given = "max_parallel = 1\nstep_timeout = 200\nverify_timeout = 120\ncommand_timeout = 900"
    prod = parse_config(_with("max_parallel = 1", given), FILE).environment("prod")
    assert (prod.verify_seconds, prod.command_seconds) == (120.0, 900.0)


def test_node_shells_get_the_timeouts_of_the_nodes_environment() -> None:
    """The composition root hands each node its environment's limits; a node in two environments
    gets the longer of each."""
    text = _with("max_parallel = 1", "max_parallel = 1\nstep_timeout = 100\ncommand_timeout = 700")
    text += 'verify_timeout = 200\n[environments.all]\nlabels = ["prod"]\nstep_timeout = 30\n'
    config = parse_config(text, FILE)
    shells = AsyncsshNodeShells(node_timeouts=node_timeouts(config))
    web1, stage1 = config.nodes["web1"], config.nodes["stage1"]
    assert shells.timeouts_of(web1) == NodeTimeouts(command=700.0, verify=80.0)
    assert shells.timeouts_of(stage1) == NodeTimeouts(command=300.0, verify=200.0)


def _with(replace: str, by: str) -> str:
    assert replace in VALID, replace
    return VALID.replace(replace, by, 1)


BAD_INPUT = [
    ("toml syntax", 'app = "hello', "invalid TOML"),
    ("unknown key", _with('user = "deploy"', 'usr = "deploy"'), "nodes.web1.usr: unknown key"),
    ("unknown top-level key", 'apps = "x"', "apps: unknown key"),
    (
        "node not defined",
        _with('nodes = ["stage1"]', 'nodes = ["stage1", "web9"]'),
        "environments.staging.nodes[1]: node 'web9' is not defined under [nodes]",
    ),
    (
        "label matching no node",
        _with('labels = ["prod"]\nstrategy', 'labels = ["qa"]\nstrategy'),
        "environments.prod.labels: label 'qa' matches no node",
    ),
    (
        "environment with no nodes",
        _with('nodes = ["stage1"]', "nodes = []"),
        "environments.staging: has no nodes",
    ),
    (
        "unknown strategy",
        _with('"rest_for_one"', '"one_for_some"'),
        "environments.prod.strategy: expected one of one_for_one | rest_for_one | one_for_all",
    ),
    (
        "unknown fallback",
        _with('"stop"', '"retry"'),
        "environments.prod.fallback: expected one of rollback | stop | ignore, got 'retry'",
    ),
    (
        "max_parallel < 1",
        _with("max_parallel = 1", "max_parallel = 0"),
        "environments.prod.max_parallel: expected an integer >= 1, got 0",
    ),
    (
        "negative max_failures",
        _with("max_failures = 2", "max_failures = -1"),
        "environments.prod.max_failures: expected an integer >= 0",
    ),
    (
        "port out of range",
        _with("port = 2222", "port = 70000"),
        "nodes.web2.port: expected a port number 1-65535, got 70000",
    ),
    (
        "port not a number",
        _with("port = 2222", 'port = "ssh"'),
        "nodes.web2.port: expected a port number 1-65535, got 'ssh'",
    ),
    ("port a boolean", _with("port = 2222", "port = true"), "nodes.web2.port: expected a port"),
    (
        "duplicate node address",
        _with('host = "10.0.1.1"', 'host = "10.0.0.11"'),
        "nodes.stage1.host: 10.0.0.11 is already the address of node 'web1'",
    ),
    (
        "bad store URL",
        _with('"s3://releases-bucket/hello"', '"ftp://releases/hello"'),
        "store.url: expected a local directory, user@host:/path or s3://bucket/prefix",
    ),
    (
        "S3 bucket name invalid",
        _with('"s3://releases-bucket/hello"', '"s3://x/hello"'),
        "store.url: expected s3://bucket/prefix with a valid bucket name",
    ),
    (
        "credentials in a store URL",
        _with('"s3://releases-bucket/hello"', '"s3://AKIA:secret@bucket"'),
        "store.url: credentials never go in the URL",
    ),
    (
        "relative deploy path",
        _with('path = "/opt/hello/"', 'path = "opt/hello"'),
        "nodes.web2.path: expected an absolute deploy path",
    ),
    ("missing host", _with('host = "10.0.0.12"\n', ""), "nodes.web2.host: missing"),
    (
        "unknown mode",
        _with("max_parallel = 1", 'max_parallel = 1\nmode = "hot"'),
        "environments.prod.mode: expected one of release | upgrade",
    ),
    (
        "unknown build strategy",
        _with('strategy = "local"', 'strategy = "cloud"'),
        "build.strategy: expected one of local | remote | docker",
    ),
    (
        "labels not strings",
        _with('labels = ["staging"]', "labels = [1]"),
        "nodes.stage1.labels: expected a list of strings",
    ),
    ("a node that is not a table", 'nodes = { web1 = "10.0.0.1" }', "nodes.web1: expected a table"),
    ("unknown command", '[commands]\nrestart = "x"', "commands.restart: unknown key"),
    ("command not a string", "[commands]\nhealth = 1", "commands.health: expected a shell command"),
    (
        "bad step_timeout",
        _with("max_parallel = 1", "max_parallel = 1\nstep_timeout = 0"),
        "environments.prod.step_timeout: expected a number of seconds > 0",
    ),
    *[
        (
            f"{key} = {value}",
            _with("max_parallel = 1", f"max_parallel = 1\n{key} = {value}"),
            f"environments.prod.{key}: expected a number of seconds > 0, got {shown}",
        )
        for key in ("step_timeout", "verify_timeout", "command_timeout")
        for value, shown in (("true", "True"), ("nan", "nan"), ("inf", "inf"), ("-5", "-5"))
    ],
    (
        "verify_timeout beyond its step",
        _with("max_parallel = 1", "max_parallel = 1\nstep_timeout = 30\nverify_timeout = 31"),
        "environments.prod.verify_timeout: expected at most step_timeout (30), got 31",
    ),
    ("max_failures a boolean", _with("max_failures = 2", "max_failures = true"), "got True"),
    ("max_parallel a float", _with("max_parallel = 1", "max_parallel = 1.5"), "got 1.5"),
    (
        "keep_releases negative",
        _with("max_parallel = 1", "max_parallel = 1\nkeep_releases = -1"),
        "environments.prod.keep_releases: expected an integer >= 1, got -1",
    ),
    (
        "keep_releases a boolean",
        _with("max_parallel = 1", "max_parallel = 1\nkeep_releases = false"),
        "environments.prod.keep_releases: expected an integer >= 1, got False",
    ),
    (
        "url_expiry a boolean",
        "[transfer]\nurl_expiry = true",
        "transfer.url_expiry: expected an integer >= 60, got True",
    ),
    ("empty host", _with('host = "10.0.0.12"', 'host = ""'), "nodes.web2.host: empty"),
    ("blank host", _with('host = "10.0.0.12"', 'host = "  "'), "nodes.web2.host: empty"),
    (
        "host with a user",
        _with('host = "10.0.0.12"', 'host = "deploy@10.0.0.12"'),
        "nodes.web2.host: 'deploy@10.0.0.12' has a user in it; give it as user = ...",
    ),
    (
        "host with a port",
        _with('host = "10.0.0.12"', 'host = "10.0.0.12:2222"'),
        "nodes.web2.host: '10.0.0.12:2222' has a port in it; give it as port = ...",
    ),
    (
        "bracketed IPv6 host with a port",
        _with('host = "10.0.0.12"', 'host = "[::1]:2222"'),
        "nodes.web2.host: '[::1]:2222' has a port in it",
    ),
    *[
        (
            f"host {host!r}",
            _with('host = "10.0.0.12"', f"host = '{host}'"),
            f"nodes.web2.host: {host!r} has spaces or shell characters",
        )
        for host in ("web 2", "web2;reboot", "$(id)", "-oProxyCommand=x", "web2\\t")
    ],
    (
        "build port out of range",
        '[build]\nstrategy = "remote"\nhost = "b@build:/srv"\nport = 70000',
        "build.port: expected a port number 1-65535, got 70000",
    ),
    (
        "store host with shell characters",
        '[store]\nurl = "deploy@store;reboot:/srv/releases"',
        "store.url: host 'store;reboot' has spaces or shell characters",
    ),
    (
        "build host with shell characters",
        '[build]\nstrategy = "remote"\nhost = "b@$(id):/srv"',
        "build.host: host '$(id)' has spaces or shell characters",
    ),
    (
        "user with shell characters",
        _with('user = "deploy"', 'user = "deploy;id"'),
        "nodes.web1.user: expected a user name (letters, digits, _ . -), got 'deploy;id'",
    ),
]


@pytest.mark.parametrize(
    ("text", "message"), [(t, m) for _, t, m in BAD_INPUT], ids=[name for name, _, _ in BAD_INPUT]
)
def test_bad_input_gets_one_line_naming_file_and_key(text: str, message: str) -> None:
    """Each kind of bad input is a ConfigError (exit 2) naming the file, the key and the problem."""
    with pytest.raises(ConfigError) as raised:
        parse_config(text, FILE)
    assert str(raised.value).startswith(f"{FILE}: ")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert raised.value.exit_code == 2
