"""edeliver.toml parsing: a valid file yields settings; each kind of bad input a precise error."""

from __future__ import annotations

import pytest

from edeliver.adapters.node_scripts import ReleaseCommands
from edeliver.cli.composition import release_commands
from edeliver.core.config import Policy, parse_config
from edeliver.core.errors import ConfigError, NotFoundError

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
