"""The app's runtime settings in edeliver.toml: parsed, checked, resolved per node, and what the
node's env file says; each kind of bad input one precise error."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from edeliver.adapters.events.event_store_faults import SimulatedCrash
from edeliver.adapters.node.runtime_env_files import RuntimeEnvFiles, env_file_text, write_script
from edeliver.cli.composition import deployer_secrets
from edeliver.core.domain.config_parser import parse_config
from edeliver.core.domain.errors import ConfigError, RefusedError
from edeliver.core.domain.runtime_env import NodeRuntime, runtimes, secret_variables
from edeliver.core.domain.runtime_settings import FromEnv, FromFile
from tests.support.simulation import Simulation, config_text

FILE = ".deliver/edeliver.toml"
NODES = """
app = "ledger"
[nodes.web1]
host = "10.0.0.11"
path = "/opt/ledger"
node_name = "ledger@web1.example"
[nodes.web1.env]
LEDGER_GREETING = "hello from web1"
[nodes.web2]
host = "10.0.0.12"
path = "/opt/ledger"
env = { RELEASE_NODE = "ledger@web2" }
[nodes.web3]
host = "10.0.0.13"
path = "/opt/ledger"
"""
PROD = """
[environments.prod]
nodes = ["web1", "web2", "web3"]
cookie = { from_env = "PROD_COOKIE" }
[environments.prod.env]
PHX_SERVER = "true"
LEDGER_GREETING = "hello"
DATABASE_URL = { from_env = "PROD_DATABASE_URL" }
SECRET_KEY_BASE = { from_file = "secret_key_base" }
"""
DEPLOYER = {"PROD_DATABASE_URL": "ecto://app:pw-1234@db/ledger", "PROD_COOKIE": "c00kie-prod"}


def _config(extra: str = PROD, nodes: str = NODES) -> object:
    return parse_config(nodes + extra, FILE)


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as error:
        parse_config(text, FILE)
    return str(error.value)


def test_env_tables_keep_plain_values_and_name_secrets() -> None:
    """Plain strings stay as written; secrets are only their source (a variable, a file)."""
    config = parse_config(NODES + PROD, FILE)
    prod = config.environment("prod")
    assert dict(prod.env) == {
        "PHX_SERVER": "true",
        "LEDGER_GREETING": "hello",
        "DATABASE_URL": FromEnv("PROD_DATABASE_URL"),
        "SECRET_KEY_BASE": FromFile("secret_key_base"),
    }
    assert prod.cookie == FromEnv("PROD_COOKIE")
    assert config.nodes["web1"].node_name == "ledger@web1.example"
    assert config.nodes["web2"].release_node == "ledger@web2"


def test_integers_and_booleans_are_written_as_toml_spells_them() -> None:
    """PORT = 4000 and PHX_SERVER = true reach the node as "4000" and "true"; AWS_REGION is no
    secret."""
    text = NODES + '[environments.prod]\nnodes = ["web3"]\n[environments.prod.env]\n'
    text += 'PORT = 4000\nPHX_SERVER = true\nAWS_REGION = "eu-west-1"\n'
    env = dict(parse_config(text, FILE).environment("prod").env)
    assert env == {"PORT": "4000", "PHX_SERVER": "true", "AWS_REGION": "eu-west-1"}


def test_a_node_s_values_win_over_its_environment_s_and_secrets_are_filled_in() -> None:
    """web1's greeting is its own; DATABASE_URL comes from the deployer; the file stays named."""
    resolved = runtimes(parse_config(NODES + PROD, FILE), "prod", DEPLOYER)
    web1, web3 = dict(resolved["web1"].values), dict(resolved["web3"].values)
    assert web1["LEDGER_GREETING"] == "hello from web1" and web3["LEDGER_GREETING"] == "hello"
    assert web1["DATABASE_URL"] == DEPLOYER["PROD_DATABASE_URL"]
    assert resolved["web3"].files == (("SECRET_KEY_BASE", "secret_key_base"),)
    assert resolved["web1"].cookie == "c00kie-prod" == resolved["web3"].cookie


def test_a_node_name_with_a_dotted_host_gets_long_names_and_a_short_one_keeps_the_default() -> None:
    """`--sname` refuses dots: ledger@web1.example needs RELEASE_DISTRIBUTION=name."""
    resolved = runtimes(parse_config(NODES + PROD, FILE), "prod", DEPLOYER)
    web1, web2 = dict(resolved["web1"].values), dict(resolved["web2"].values)
    assert (web1["RELEASE_NODE"], web1["RELEASE_DISTRIBUTION"]) == ("ledger@web1.example", "name")
    assert web2["RELEASE_NODE"] == "ledger@web2" and "RELEASE_DISTRIBUTION" not in web2
    assert "RELEASE_NODE" not in dict(resolved["web3"].values)


def test_a_secret_missing_from_the_deployer_s_environment_names_the_key_and_the_variable() -> None:
    """One line, the config's exit code, nothing about any other value."""
    with pytest.raises(ConfigError) as missing:
        runtimes(parse_config(NODES + PROD, FILE), "prod", {"PROD_COOKIE": "c00kie-prod"})
    assert str(missing.value) == (
        f"{FILE}: environments.prod.env.DATABASE_URL: PROD_DATABASE_URL is not set in the "
        "deployer's environment; nothing was changed on any node"
    )
    assert missing.value.exit_code == 2


def test_a_missing_cookie_variable_names_the_cookie_key() -> None:
    """The cookie's variable is checked like any other secret."""
    with pytest.raises(ConfigError, match=r"environments\.prod\.cookie: PROD_COOKIE is not set"):
        runtimes(parse_config(NODES + PROD, FILE), "prod", {"PROD_DATABASE_URL": "x"})


def test_another_environment_s_missing_secret_does_not_matter() -> None:
    """Deploying staging needs none of prod's secrets."""
    staging = '[environments.staging]\nnodes = ["web3"]\n'
    assert runtimes(parse_config(NODES + PROD + staging, FILE), "staging", {})["web3"].values == ()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('SECRET_KEY_BASE = "abc"', "env.SECRET_KEY_BASE: SECRET_KEY_BASE looks like a secret; "
         'secrets never go in the config: use { from_env = "VAR" } or { from_file = "..." }'),
        ('DB_PASSWORD = "hunter22"', "env.DB_PASSWORD: DB_PASSWORD looks like a secret"),
        ("PORT = 4.5", "env.PORT: expected a string, an integer, a boolean, { from_env = "
         '"VAR" } or { from_file = "path" }, got 4.5'),
        ('"bad-name" = "x"', "env.bad-name: expected an environment variable name (A-Z, 0-9, _)"),
        ('KEY = { from_env = "A", from_file = "b" }', "env.KEY: expected { from_env = \"VAR\" } "
         "or { from_file = \"path\" }"),
        ('KEY = { from_env = "not a name" }', "env.KEY.from_env: expected an environment "
         "variable name"),
        ('KEY = { from_file = "/etc/shadow" }', "env.KEY.from_file: expected a path below the "
         "node's shared/ dir (like secret_key_base), got '/etc/shadow'"),
        ('KEY = { from_file = "../.ssh/id_rsa" }', "env.KEY.from_file: expected a path below"),
        ('RELEASE_COOKIE = { from_env = "C" }', "env.RELEASE_COOKIE: set by Edeliver; give it "
         'as cookie = { from_env = "..." } of the environment'),
        ('RELEASE_NODE = "a@b"', "env.RELEASE_NODE: one per node: give it as "
         "nodes.<node>.node_name"),
    ],
)  # fmt: skip
def test_a_bad_environment_env_entry_is_one_precise_error(table: str, message: str) -> None:
    """Each names the key path under environments.prod.env and what was expected."""
    text = NODES + f'[environments.prod]\nnodes = ["web3"]\n[environments.prod.env]\n{table}\n'
    assert _error(text).startswith(f"{FILE}: environments.prod.{message}")


def test_two_nodes_of_one_environment_with_one_node_name_are_a_config_error() -> None:
    """The second node giving the name is named, with the first one and the environment."""
    nodes = NODES.replace('"ledger@web2"', '"ledger@web1.example"')
    text = nodes + '[environments.prod]\nnodes = ["web1", "web2"]\n'
    assert _error(text) == (
        f"{FILE}: nodes.web2.node_name: ledger@web1.example is already the node name of 'web1' "
        "in environment 'prod'; node names are unique per environment"
    )


def test_one_node_name_in_two_environments_is_fine() -> None:
    """Uniqueness is per environment: a node name may come back in another one."""
    nodes = NODES.replace('"ledger@web2"', '"ledger@web1.example"')
    text = nodes + '[environments.a]\nnodes = ["web1"]\n[environments.b]\nnodes = ["web2"]\n'
    assert parse_config(text, FILE).nodes["web2"].release_node == "ledger@web1.example"


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ('node_name = "web1"', "nodes.web9.node_name: expected a node name like app@host, "
         "got 'web1'"),
        ('node_name = "a@b"\nenv = { RELEASE_NODE = "a@c" }', "nodes.web9.node_name: given "
         "twice: here and as env.RELEASE_NODE"),
        ('env = { RELEASE_NODE = "a b@c" }', "nodes.web9.env.RELEASE_NODE: expected a node name"),
        ('cookie = { from_env = "C" }', "nodes.web9.cookie: unknown key"),
    ],
)  # fmt: skip
def test_a_bad_node_setting_is_one_precise_error(node: str, message: str) -> None:
    """Node names look like app@host and are given once; cookies are per environment."""
    text = f'[nodes.web9]\nhost = "h"\npath = "/p"\n{node}\n'
    assert _error(text).startswith(f"{FILE}: {message}")


def test_a_cookie_is_only_ever_taken_from_the_deployer_s_environment() -> None:
    """A literal cookie would be a secret in the config."""
    text = NODES + '[environments.prod]\nnodes = ["web3"]\ncookie = "abc"\n'
    assert _error(text) == (
        f'{FILE}: environments.prod.cookie: expected {{ from_env = "VAR" }} (default: '
        "generated once, kept on the nodes), got 'abc'"
    )


def test_the_values_of_every_configured_secret_are_redacted() -> None:
    """from_env variables, the cookie's and `redact` names are hidden, whatever their names."""
    config = parse_config('redact = ["STRIPE_API"]\n' + NODES + PROD, FILE)
    assert secret_variables(config) == {"PROD_DATABASE_URL", "PROD_COOKIE", "STRIPE_API"}
    env = {**DEPLOYER, "STRIPE_API": "sk-live-9876", "PLAIN": "visible-value"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        hide = deployer_secrets(config)
    said = hide("url=ecto://app:pw-1234@db/ledger c00kie-prod sk-live-9876 visible-value")
    assert said == "url=[redacted] [redacted] [redacted] visible-value"


def test_the_env_file_quotes_values_and_reads_file_secrets_on_the_node() -> None:
    """Values are single-quoted as written; a from_file secret is a `cat` of the node's file."""
    runtime = NodeRuntime((("GREETING", "it's $HOME"),), (("SKB", "secret_key_base"),), None)
    text = env_file_text("/opt/my app", runtime, "c00kie")
    assert text.splitlines() == [
        "export GREETING='it'\"'\"'s $HOME'",
        "export SKB=\"$(cat '/opt/my app/shared/secret_key_base')\"",
        "export RELEASE_COOKIE=c00kie",
    ]


def test_the_write_script_feeds_values_on_stdin_and_checks_file_secrets_first() -> None:
    """Every value is inside a quoted here-document read by the shell's own `read` (no process,
    no command line holds it); the file check comes before any write."""
    runtime = NodeRuntime((("DATABASE_URL", "ecto://pw-1234"),), (("SKB", "skb"),), None)
    script = write_script("/opt/ledger", runtime, "c00kie")
    lines = script.splitlines()
    value_line = next(i for i, line in enumerate(lines) if "pw-1234" in line)
    opening = max(i for i, line in enumerate(lines[:value_line]) if "<<'EDELIVER_END_" in line)
    assert lines[opening].endswith("done <<'" + lines[opening].rpartition("<<'")[2])
    assert "while IFS= read -r l; do env=" in lines[opening - 1]
    assert "cat >" not in script and "pw-1234" not in "".join(lines[:opening])
    assert script.index('[ -r "$P/shared/"skb ]') < script.index('write_if_changed "$')
    assert "umask 077" in script and repr(runtime) == "NodeRuntime(DATABASE_URL, SKB)"


def _with_secret(sim: Simulation) -> Simulation:
    """The simulation's prod environment with a secret from the deployer's environment."""
    text = config_text(3) + '\n[environments.prod.env]\nDB = { from_env = "PROD_DB" }\n'
    return replace(sim, config=parse_config(text, "edeliver.toml"))


def test_a_deploy_missing_a_secret_is_refused_before_any_lock_or_node(tmp_path: Path) -> None:
    """No deployment recorded, no step taken on any node, the key and the variable named."""
    sim = _with_secret(Simulation.create(tmp_path, 3))
    with pytest.raises(ConfigError, match=r"environments\.prod\.env\.DB: PROD_DB is not set"):
        sim.deploy("1.0.0")
    assert sim.trace == [] and sim.deployments().history() == []


def test_a_resume_missing_a_secret_is_refused_before_any_node(tmp_path: Path) -> None:
    """An interrupted deployment stays unfinished and untouched until the variable is back."""
    sim = Simulation.create(tmp_path, 3)
    with pytest.raises(SimulatedCrash):
        sim.deploy("1.0.0", crash_after=8)
    steps = len(sim.trace)
    sim = _with_secret(sim)
    with pytest.raises(ConfigError, match="PROD_DB is not set"):
        sim.resume()
    assert len(sim.trace) == steps and len(sim.deployments().unfinished()) == 1


def test_nodes_are_asked_for_their_cookie_only_when_the_deployer_gives_none() -> None:
    """With `cookie = { from_env }` the kept cookies cannot matter: no node is asked for
    them; without it, each is (its lock's holder reads it), and disagreeing nodes are refused."""
    given = RuntimeEnvFiles(_config(), DEPLOYER)
    assert not given.asks_cookie("prod", "web1") and not given.asks_cookie("prod", "web2")
    assert given.cookie("prod", "web2") == "c00kie-prod"

    kept = RuntimeEnvFiles(
        _config(PROD.replace('cookie = { from_env = "PROD_COOKIE" }\n', "")), DEPLOYER
    )
    assert kept.asks_cookie("prod", "web1")
    asyncio.run(kept.take_kept_cookie("cookie=kept-1\n", "prod", "web1"))
    asyncio.run(kept.take_kept_cookie("", "prod", "web3"))  # keeps none: no disagreement
    with pytest.raises(RefusedError, match=r"^web1 and web2 keep different Erlang cookies "):
        asyncio.run(kept.take_kept_cookie("cookie=kept-2\n", "prod", "web2"))
    assert kept.cookie("prod", "web3") == "kept-1"
