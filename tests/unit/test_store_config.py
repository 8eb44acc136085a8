"""[store] and [transfer] settings: strict, one line naming the file and key at fault."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edeliver.adapters.node.hot_upgrade import HotUpgradeNodeShells
from edeliver.cli.composition import real_adapters
from edeliver.core.domain.config_parser import parse_config
from edeliver.core.domain.errors import ConfigError, UsageError

NODE = '[nodes.a]\nhost = "h"\npath = "/srv"\n[environments.prod]\nnodes = ["a"]\n'


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_config(text + "\n" + NODE, "edeliver.toml")


def test_s3_settings_are_read_and_name_no_secret() -> None:
    config = parse(
        '[store]\nurl = "s3://rel-bucket/hello"\nendpoint_url = "http://127.0.0.1:9000"\n'
        'region = "eu-west-1"\nprofile = "ci"\nchecksums = "when_required"\n'
        '[transfer]\nmode = "pull"\nurl_expiry = 120'
    )
    store = config.store
    assert (store.kind, store.endpoint_url, store.region, store.profile, store.checksums) == (
        "s3",
        "http://127.0.0.1:9000",
        "eu-west-1",
        "ci",
        "when_required",
    )
    assert (config.transfer.mode, config.transfer.url_expiry) == ("pull", 120)


def test_the_default_transfer_is_push() -> None:
    assert parse("").transfer.mode == "push"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[store]\nurl = "s3://b-1/p"\nsecret_access_key = "x"',
            r"store\.secret_access_key: unknown key",
        ),
        ('[store]\nurl = "s3://key:secret@b-1/p"', "credentials never go in the URL"),
        ('[store]\nurl = "s3://b-1/p"\nendpoint_url = "http://k:s@host"', "without credentials"),
        ('[store]\nurl = ".deliver/releases"\nregion = "x"', "applies to s3 stores"),
        ('[store]\nurl = "s3://b-1/p"\nport = 22', "applies to ssh stores"),
        ('[store]\nurl = "s3://b-1/p"\nchecksums = "never"', "when_supported | when_required"),
        ('[transfer]\nmode = "pull"', "pull needs a store the nodes can reach"),
        ('[transfer]\nmode = "carrier-pigeon"', "push | pull"),
        ('[store]\nurl = "s3://b-1/p"\n[transfer]\nurl_expiry = 5', "an integer >= 60"),
    ],
)
def test_bad_store_and_transfer_settings_are_one_line_naming_the_key(
    text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse(text)
    assert str(caught.value).startswith("edeliver.toml: ") and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "store",
    [
        'url = ".deliver/releases"',
        'url = "s3://rel-bucket/hello"\nendpoint_url = "http://127.0.0.1:9"',
        'url = "deploy@store.invalid:/srv/releases"',
    ],
)
def test_every_store_kind_serves_hot_upgrades_from_its_own_packages(
    store: str, tmp_path: Path
) -> None:
    """Each store keeps the upgrade packages beside its releases; no node is contacted here."""
    config = parse_config(f'app = "hello"\n[store]\n{store}\n' + NODE, "edeliver.toml")
    adapters = real_adapters(tmp_path, config)
    shells = adapters.upgrade_shells
    assert isinstance(shells, HotUpgradeNodeShells) and shells.store is adapters.store


def test_hot_upgrades_without_an_app_name_are_refused_naming_the_key(tmp_path: Path) -> None:
    """The packages are found by app name: without one, the first node opened is refused
    plainly (before the deployment changes anything)."""
    config = parse_config(NODE, "edeliver.toml")
    shells = real_adapters(tmp_path, config).upgrade_shells
    assert shells is not None
    with pytest.raises(UsageError, match=r"^edeliver.toml: app: not set"):
        asyncio.run(shells.open(config.nodes["a"]))
