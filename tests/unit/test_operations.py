"""Operations (start, stop, restart) on in-memory nodes: batches, locks, events, history."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Container
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from typer.testing import CliRunner

from edeliver.adapters.events.event_store import store_settings
from edeliver.adapters.local.clock import FakeClock
from edeliver.adapters.node.fakes import FakeHost, InMemoryNodeControl, InMemoryNodeShells
from edeliver.cli.main import Runtime, app
from edeliver.core.domain.config import NodeConfig
from edeliver.core.domain.config_parser import parse_config
from edeliver.core.domain.deployment import Deployment
from edeliver.core.domain.errors import ConfigError, LockHeldError, NotFoundError
from edeliver.core.domain.node_filter import is_subset, selected_nodes
from edeliver.core.domain.operation import MIGRATE, RESTART, Operation
from edeliver.core.domain.redaction import Redactor
from edeliver.core.ports import NodeClaim, NodeControl
from edeliver.core.usecases.operations import (
    OperationRequest,
    abandon_operation,
    find_operation,
    migration,
    operate,
    operation_history,
)
from edeliver.core.usecases.service import Deployments

NODES = ("a", "b", "c", "d")
CONFIG = "\n".join(
    f'[nodes.{n}]\nhost = "10.0.0.{i}"\npath = "/srv/x"\nlabels = ["{"eu" if i < 3 else "us"}"]'
    for i, n in enumerate(NODES, start=1)
) + '\n[environments.prod]\nnodes = ["a", "b", "c", "d"]\nmax_parallel = 2\n'  # fmt: skip


@pytest.fixture
def deployments(tmp_path: Path) -> Deployments:
    return Deployments(env=store_settings(tmp_path, f"sqlite:///{tmp_path}/events.db", {}))


def fleet() -> InMemoryNodeShells:
    return InMemoryNodeShells(
        {n: FakeHost(releases={"1.0"}, current="1.0", running="1.0") for n in NODES}
    )


def restart(
    deployments: Deployments, shells: InMemoryNodeShells, failing: Container[str] = ()
) -> Operation:
    request = OperationRequest("x", "prod", RESTART, NODES, 2, False)
    config = parse_config(CONFIG, "edeliver.toml")

    async def open_control(name: str) -> NodeControl:
        return InMemoryNodeControl(await shells.open(config.nodes[name]), failing)

    return asyncio.run(
        operate(request, open_control, deployments, FakeClock(), "me@here", str(uuid4()))
    )


def test_a_restart_goes_batch_by_batch_and_records_each_node(deployments: Deployments) -> None:
    """Batches of max_parallel: the second starts after the first is back; every node's
    outcome and the operation's are stored."""
    shells = fleet()
    operation = restart(deployments, shells)
    assert [s for s in shells.trace if s[0] == "restart"] == [("restart", n) for n in NODES]
    assert operation.outcome == "succeeded"
    stored = deployments.repository.get(operation.id)
    assert stored.outcomes == dict.fromkeys(NODES, "ok")
    assert all(h.running == "1.0" and h.lock is None for h in shells.hosts.values())


def test_a_node_that_does_not_come_back_stops_the_restart_there(deployments: Deployments) -> None:
    """b fails in the first batch: the second batch is never touched and recorded skipped."""
    shells = fleet()
    operation = restart(deployments, shells, failing={"b"})
    assert operation.outcome == "failed"
    assert operation.outcomes == {"a": "ok", "b": "failed", "c": "skipped", "d": "skipped"}
    assert shells.hosts["c"].running == "1.0" and ("restart", "c") not in shells.trace


def test_an_operation_is_refused_while_a_deployment_holds_the_environment(
    deployments: Deployments,
) -> None:
    """The environment lock is shared: a deployment in progress refuses a restart, naming it."""
    held = Deployment(
        str(uuid4()), "x", "prod", "2.0", "release", {"strategy": "one_for_all",
        "fallback": "rollback"}, list(NODES), [list(NODES)], "other@there", "t",
    )  # fmt: skip
    deployments.begin(held)
    shells = fleet()
    with pytest.raises(LockHeldError, match=f"deployment {held.short_id} \\(other@there\\)"):
        restart(deployments, shells)
    assert shells.trace == []


def test_a_node_locked_by_another_refuses_the_whole_operation(deployments: Deployments) -> None:
    """A node held elsewhere: nothing is done on any node, the operation is recorded refused
    and the environment is free again."""
    shells = fleet()
    node_c = parse_config(CONFIG, "edeliver.toml").nodes["c"]

    async def hold_elsewhere() -> None:
        shell = await InMemoryNodeShells({"c": shells.hosts["c"]}).open(node_c)
        await shell.hold(NodeClaim("d1", "staging", "other@there"))

    asyncio.run(hold_elsewhere())
    with pytest.raises(LockHeldError):
        restart(deployments, shells)
    assert [s for s in shells.trace if s[0] == "restart"] == []
    (row,) = operation_history(deployments)
    assert row.outcome == "refused"
    assert deployments.environment_lock("x", "prod").deployment_id is None


def test_history_and_lookup_find_an_operation_by_its_id_prefix(deployments: Deployments) -> None:
    """The history row says what was done, by whom, to which nodes; a prefix finds it."""
    operation = restart(deployments, fleet())
    (row,) = operation_history(deployments)
    assert (row.action, row.nodes, row.started_by, row.outcome) == (
        "restart", list(NODES), "me@here", "succeeded",
    )  # fmt: skip
    assert find_operation(deployments, str(operation.id)[:8]) == row
    assert find_operation(deployments, "ffffffff") is None


@pytest.mark.parametrize(
    ("names", "labels", "chosen"),
    [((), (), NODES), (("c", "a"), (), ("a", "c")), ((), ("us",), ("c", "d")),
     (("a",), ("us",), ("a", "c", "d"))],
)  # fmt: skip
def test_node_and_label_options_choose_nodes_in_the_environments_order(
    names: tuple[str, ...], labels: tuple[str, ...], chosen: tuple[str, ...]
) -> None:
    """--node names and --label labels add up; the environment's order is kept."""
    config = parse_config(CONFIG, "edeliver.toml")
    nodes = selected_nodes(config, "prod", names, labels)
    assert tuple(n.name for n in nodes) == chosen
    assert is_subset(config, "prod", nodes) == (chosen != NODES)


@pytest.mark.parametrize(
    ("names", "labels", "message"),
    [(("z",), (), "--node z: not a node of environment 'prod' (its nodes: a, b, c, d)"),
     ((), ("asia",), "--label asia: no node of environment 'prod' carries it")],
)  # fmt: skip
def test_an_unknown_node_or_label_is_named(
    names: tuple[str, ...], labels: tuple[str, ...], message: str
) -> None:
    """A filter that matches nothing is an error naming it, not an operation on no node."""
    config = parse_config(CONFIG, "edeliver.toml")
    with pytest.raises(NotFoundError) as error:
        selected_nodes(config, "prod", names, labels)
    assert str(error.value) == message


def test_a_migration_runs_once_on_the_node_asked_and_its_secrets_are_not_stored(
    deployments: Deployments,
) -> None:
    """`migrate` is an operation on one node; what the function said is stored without the
    deployer's secrets."""
    shells = fleet()
    config = parse_config(CONFIG, "edeliver.toml")
    request = OperationRequest("x", "prod", MIGRATE, ("b",), 2, True)

    async def open_control(name: str) -> NodeControl:
        return InMemoryNodeControl(await shells.open(config.nodes[name]))

    hide = Redactor(["s3cr3t-value"])
    act = migration("X.Release.migrate")
    operation = asyncio.run(
        operate(
            request, open_control, deployments, FakeClock(), "me", str(uuid4()),
            lambda control: _saying(act(control), " with s3cr3t-value"), hide,
        )
    )  # fmt: skip
    assert [s for s in shells.trace if s[0].startswith("migrate")] == [
        ("migrate X.Release.migrate", "b")
    ]
    assert operation.details == {"b": "X.Release.migrate() done with [redacted]"}


async def _saying(said: Awaitable[str], more: str) -> str:
    return await said + more


@pytest.mark.parametrize("value", ["migrate", "MyApp.Release.migrate()", "myapp.migrate", 3])
def test_a_migrate_setting_that_is_no_function_is_named(value: object) -> None:
    """`migrate` must name an Elixir function Module.function; anything else names the key."""
    text = CONFIG + f"migrate = {json.dumps(value)}\n"
    expected = r"edeliver.toml: environments\.prod\.migrate: expected an Elixir function"
    with pytest.raises(ConfigError, match=expected):
        parse_config(text, "edeliver.toml")


def test_an_operation_whose_deployer_died_is_abandoned_and_frees_the_environment(
    deployments: Deployments,
) -> None:
    """An operation left holding the environment (its deployer killed outright) is found by
    its id prefix, abandoned with the reason recorded, and the environment is free again."""
    started = Operation(str(uuid4()), "x", "prod", RESTART, list(NODES), [list(NODES)], False,
                        "gone@there", "t")  # fmt: skip
    deployments.take_environment(
        "x", "prod", str(started.id), "gone@there", "t", RESTART, started.collect_events()
    )
    with pytest.raises(LockHeldError, match=r"`edeliver restart` .* it ends with that command"):
        restart(deployments, fleet())
    summary = find_operation(deployments, str(started.id)[:8])
    assert summary is not None and summary.outcome is None
    abandon_operation(deployments, summary, "machine lost", "t2")
    (row,) = [r for r in operation_history(deployments) if r.id == summary.id]
    assert row.outcome == "abandoned"
    assert deployments.environment_lock("x", "prod").deployment_id is None
    assert restart(deployments, fleet()).outcome == "succeeded"


def cli_runtime(tmp_path: Path, shells: InMemoryNodeShells, failing: Container[str] = ()) -> Any:
    """The command line's Runtime on in-memory nodes and a SQLite store in tmp_path."""
    config = parse_config('app = "x"\n' + CONFIG, "edeliver.toml")

    async def open_control(node: NodeConfig) -> NodeControl:
        return InMemoryNodeControl(await shells.open(node), failing)

    return Runtime(
        project=tmp_path,
        load_config=lambda _: config,
        controls=lambda _project, _config: open_control,
        open_events=lambda _: Deployments(
            env=store_settings(tmp_path, f"sqlite:///{tmp_path}/events.db", {})
        ),
    )


def test_restart_prints_each_nodes_result_as_json_and_exits_1_when_one_failed(
    tmp_path: Path,
) -> None:
    """The JSON document names the operation and every node's result; a node that did not
    come back (c, in the last batch, beside d) makes the exit code 1."""
    runtime = cli_runtime(tmp_path, fleet(), failing={"c"})
    result = CliRunner().invoke(app, ["restart", "prod", "--json"], obj=runtime)
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["schema"] == "edeliver/v1"
    assert (report["action"], report["environment"], report["outcome"]) == (
        "restart", "prod", "failed",
    )  # fmt: skip
    assert [(n["node"], n["result"]) for n in report["nodes"]] == [
        ("a", "ok"), ("b", "ok"), ("c", "failed"), ("d", "ok"),
    ]  # fmt: skip


def test_stop_with_a_label_prints_plain_lines_in_a_pipe(tmp_path: Path) -> None:
    """Not on a terminal: one `node result detail` line per chosen node, exit 0."""
    shells = fleet()
    result = CliRunner().invoke(
        app, ["stop", "prod", "--label", "us"], obj=cli_runtime(tmp_path, shells)
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "c            ok       1.0 stopped", "d            ok       1.0 stopped",
    ]  # fmt: skip
    assert [h.running for h in shells.hosts.values()] == ["1.0", "1.0", None, None]


def test_an_operation_cut_short_records_it_and_frees_the_environment(
    deployments: Deployments,
) -> None:
    """Ctrl-C while b restarts: the finished batch's nodes stay recorded, the others are
    recorded interrupted, the outcome too, and the environment and nodes are free."""
    shells = fleet()
    config = parse_config(CONFIG, "edeliver.toml")
    request = OperationRequest("x", "prod", RESTART, NODES, 1, False)

    async def open_control(name: str) -> NodeControl:
        return InMemoryNodeControl(await shells.open(config.nodes[name]))

    async def act(control: NodeControl) -> str:
        if control.name == "b":
            raise asyncio.CancelledError  # what Ctrl-C raises in the running step
        return await control.restart_release()

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(
            operate(request, open_control, deployments, FakeClock(), "me", str(uuid4()), act)
        )
    (row,) = operation_history(deployments)
    assert row.outcome == "interrupted"
    stored = deployments.repository.get(UUID(row.id))
    assert stored.outcomes == {
        "a": "ok",
        "b": "interrupted",
        "c": "interrupted",
        "d": "interrupted",
    }
    assert deployments.environment_lock("x", "prod").deployment_id is None
    assert all(h.lock is None for h in shells.hosts.values())
