"""Bad SSH input of a 1.x project, on real nodes behind a bastion: an alias missing from
~/.ssh/config, a bastion whose key is unknown, a bastion that is down. Each is one line naming
the host, exit 3, and no node changes; the refused deployment's events load and the
environment's lock is free for the next deploy."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.legacy_project import LegacyProject, legacy_project

ON_OLD = [("0.1.0", "releases/0.1.0", True)] * 2


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LegacyProject]:
    """The 1.x project, both app nodes on 0.1.0."""
    with legacy_project(tmp_path_factory.mktemp("legacy-faults")) as project:
        first = project.edeliver("deploy", "production", "--version", "0.1.0")
        assert first.returncode == 0, first.stdout + first.stderr
        yield project


def refused_unchanged(legacy: LegacyProject, naming: str) -> None:
    """Deploying 0.2.0 is refused with exit 3 and one line naming `naming`; every node still
    runs a complete 0.1.0; the refusal's events load; the lock is free again."""
    done = legacy.edeliver("deploy", "release", "to", "production", "--version=0.2.0")
    errors = [line for line in done.stderr.splitlines() if line.startswith("edeliver: ")]
    assert done.returncode == 3, done.stdout + done.stderr
    assert len(errors) == 2 and naming in errors[1], done.stderr  # the hint, then the refusal
    restore(legacy)
    assert [legacy.node_state(alias) for alias in ("web1", "web2")] == ON_OLD
    assert legacy.edeliver("log").returncode == 0
    history = legacy.edeliver("history", "production", "--json")
    last = json.loads(history.stdout)["deployments"][-1]
    assert (last["version"], last["outcome"]) == ("0.2.0", "refused"), last  # the lock is free


def restore(legacy: LegacyProject) -> None:
    legacy.write_legacy_config()
    legacy.trust_all()
    legacy.fleet.start_sshd("node1")


def test_an_alias_missing_from_the_ssh_config_is_refused_by_name(legacy: LegacyProject) -> None:
    """PRODUCTION_HOSTS naming web9, which no Host of ~/.ssh/config defines."""
    legacy.write_legacy_config("web1 web9")
    refused_unchanged(legacy, "'web9' is no Host of the ssh config")


def test_a_bastion_with_an_unknown_host_key_is_refused_by_name(legacy: LegacyProject) -> None:
    """The bastion's key missing from known_hosts: refused, naming the jump host."""
    known = legacy.known_hosts
    bastion = legacy.fleet.node("node1").known_hosts_line
    known.write_text(
        "".join(f"{line}\n" for line in known.read_text().splitlines() if line != bastion)
    )
    refused_unchanged(legacy, "jump host bastion of production")


def test_an_unreachable_bastion_is_refused_by_name(legacy: LegacyProject) -> None:
    """The bastion's sshd down: refused, naming the jump host."""
    legacy.fleet.kill_sshd("node1")
    refused_unchanged(legacy, "jump host bastion of production")
