"""Hot code upgrades of 3 real nodes through the `edeliver` command line (mode = "upgrade").

The tests run in order on one fleet: a first deploy (nodes down: full release), `build upgrade`,
the hot upgrade under a client loop, the hot rollback, then a code_change that raises on one
node. What runs is asked of the nodes themselves (OpenSSH + `bin/hello rpc`).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet
from tests.e2e.conftest import Project
from tests.support.faults_hot import V1, V2, hot_project
from tests.support.nodes import ssh
from tests.support.waiting import wait_for

HOT = 'mode = "upgrade"\nstrategy = "one_for_all"\nfallback = "rollback"\nstep_timeout = 120'

# Runs inside a node's VM until shared/client.stop exists: calls the GenServer back to back and
# counts answers, failures and the code versions that answered. Its first answer touches
# shared/client.calling, so the test knows the loop is under way.
CLIENT = """
shared = Path.expand("../../shared", to_string(:code.root_dir()))
stop = Path.join(shared, "client.stop")
calling = Path.join(shared, "client.calling")
call = fn ->
  try do
    {:ok, Hello.Counter.info().code_version}
  catch
    kind, reason -> {:error, {kind, reason}}
  end
end
loop = fn loop, ok, errors, seen, deadline ->
  if File.exists?(stop) or System.monotonic_time(:second) > deadline do
    IO.puts("ok=#{ok} errors=#{length(errors)} seen=#{Enum.join(Enum.sort(seen), ",")}")
    for e <- Enum.take(errors, 3), do: IO.puts("error=#{inspect(e)}")
  else
    case call.() do
      {:ok, v} ->
        if ok == 0, do: File.touch!(calling)
        loop.(loop, ok + 1, errors, MapSet.put(seen, v), deadline)
      {:error, e} -> loop.(loop, ok, [e | errors], seen, deadline)
    end
  end
end
loop.(loop, 0, [], MapSet.new(), System.monotonic_time(:second) + 300)
"""


def rpc(fleet: LocalFleet, node: FleetNode, elixir: str) -> str:
    quoted = elixir.replace("'", "'\\''")
    answer = ssh(fleet, node, f"cd {node.path}/current && bin/hello rpc '{quoted}'", timeout=60)
    assert answer.returncode == 0, answer.stderr
    return answer.stdout.strip()


def each(fleet: LocalFleet, elixir: str) -> dict[str, str]:
    return {node.name: rpc(fleet, node, elixir) for node in fleet.nodes}


def put_shared(node: FleetNode, name: str, text: str | None) -> None:
    """Write (or with None remove) the node's <deploy path>/shared/<name>, owned by its user."""
    shared = node.root / "shared"
    shared.mkdir(exist_ok=True)
    owner = node.root.stat()
    os.chown(shared, owner.st_uid, owner.st_gid)
    if text is None:
        (shared / name).unlink(missing_ok=True)
        return
    (shared / name).write_text(text)
    os.chown(shared / name, owner.st_uid, owner.st_gid)


def report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.stdout.strip(), result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def hot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """3 real nodes, an environment `hot` in upgrade mode, hello v1 and v2 in the store."""
    with hot_project(tmp_path_factory.mktemp("hot"), 3, HOT) as project:
        for node in project.fleet.nodes:
            put_shared(node, "hello.greeting", f"hi from {node.name}")
        yield project


def test_nodes_with_no_vm_get_the_full_release_and_the_report_says_so(hot: Project) -> None:
    """No VM answers release_handler: each node takes the full-release route, reported."""
    result = hot.edeliver("upgrade", "hot", "--version", V1, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    routes = report(result)["routes"]
    assert routes == dict.fromkeys(hot.fleet.names, "full release: no VM answers on the node")
    prepared = {
        e["node"]: e["detail"]
        for e in hot.events(report(result)["id"])
        if e["event"] == "NodeTransitioned" and e["trigger"] == "prepared"
    }
    assert prepared == routes  # the route is in the event log too, for `edeliver log`
    assert set(each(hot.fleet, "IO.puts(Hello.version())").values()) == {V1}


def test_build_upgrade_starts_from_the_version_the_nodes_run(hot: Project) -> None:
    """--from defaults to what release_handler on the environment's nodes says runs."""
    result = hot.edeliver("build", "upgrade", "--to", V2, "-e", "hot", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    built = report(result)
    assert (built["from"], built["to"]) == (V1, V2)
    assert any(note.startswith("consolidated:") for note in built["notes"])
    assert Path(built["location"]).is_file()


def test_a_hot_upgrade_keeps_pids_state_and_serves_a_client_loop_without_errors(
    hot: Project,
) -> None:
    """Same OS pids, state via code_change, runtime.exs value, new protocol impl, v2 on restart."""
    fleet = hot.fleet
    each(fleet, "Hello.Counter.bump(); Hello.Counter.bump(); IO.puts(:ok)")
    counts = {n: json_count(v) for n, v in each(fleet, "IO.puts(Hello.Counter.value())").items()}
    pids = each(fleet, "IO.puts(System.pid())")
    for node in fleet.nodes:
        put_shared(node, "client.stop", None)
        put_shared(node, "client.calling", None)
    clients = [start_client(fleet, node) for node in fleet.nodes]
    wait_for(
        lambda: all((node.root / "shared/client.calling").exists() for node in fleet.nodes),
        60,
        "every client's first answer before the upgrade starts",
    )

    result = hot.edeliver("upgrade", "hot", "--json")

    for node in fleet.nodes:
        put_shared(node, "client.stop", "")
    said = [client.communicate(timeout=60)[0] for client in clients]
    assert result.returncode == 0, result.stdout + result.stderr
    assert report(result)["routes"] == dict.fromkeys(fleet.names, f"hot upgrade from {V1}")
    for output in said:  # each loop spanned the upgrade and never failed
        assert "errors=0 " in output and f"seen={V1},{V2}" in output, output
    assert each(fleet, "IO.puts(System.pid())") == pids
    infos = each(fleet, "IO.inspect(Hello.Counter.info())")
    assert infos == {
        n: f'%{{code_version: "{V2}", count: {counts[n]}, schema: 2}}' for n in fleet.names
    }
    greetings = each(fleet, 'IO.puts(to_string(%Hello.Greeter{name: "ops"}))')
    assert greetings == {n: f"hi from {n}, ops" for n in fleet.names}
    assert set(each(fleet, "IO.inspect(Code.ensure_loaded?(Hello.Legacy))").values()) == {"false"}
    status = json.loads(hot.edeliver("status", "hot", "--json").stdout)["nodes"]
    assert {(r["running_version"], r["current_version"]) for r in status} == {(V2, V2)}

    restarted = fleet.nodes[2]  # a real stop + start boots the permanent v2
    ssh(fleet, restarted, f"cd {restarted.path}/current && bin/hello stop", timeout=60)
    wait_until_down(fleet, restarted)
    ssh(fleet, restarted, f"cd {restarted.path}/current && bin/hello daemon", timeout=60)
    assert wait_for_answer(fleet, restarted, "IO.puts(Hello.version())") == V2
    assert rpc(fleet, restarted, "IO.puts(System.pid())") != pids[restarted.name]


def json_count(text: str) -> int:
    return int(text.strip())


def start_client(fleet: LocalFleet, node: FleetNode) -> subprocess.Popen[str]:
    quoted = CLIENT.replace("'", "'\\''")
    command = f"cd {node.path}/current && bin/hello rpc '{quoted}'"
    return subprocess.Popen(
        ["ssh", "-i", str(fleet.client_key), "-o", f"UserKnownHostsFile={fleet.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-p", str(node.port),
         f"{node.user}@{node.host}", command],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def wait_until_down(fleet: LocalFleet, node: FleetNode, seconds: float = 30) -> None:
    def down() -> bool:
        probe = ssh(fleet, node, "pgrep -f bea[m].smp >/dev/null && echo up || echo down")
        return probe.stdout.strip() == "down"

    wait_for(down, seconds, f"{node.name}: the VM to stop", every=0.5)


def wait_for_answer(fleet: LocalFleet, node: FleetNode, elixir: str, seconds: float = 30) -> str:
    quoted = elixir.replace("'", "'\\''")

    def answer() -> str:
        asked = ssh(fleet, node, f"cd {node.path}/current && bin/hello rpc '{quoted}'")
        return asked.stdout.strip() if asked.returncode == 0 else ""

    return wait_for(answer, seconds, f"{node.name}: an answer to {elixir}", every=0.5)


def test_rollback_downgrades_hot(hot: Project) -> None:
    """`edeliver rollback`: install_release of v1 (the relup's down part), same OS pids."""
    fleet = hot.fleet
    pids = each(fleet, "IO.puts(System.pid())")
    counts = {n: json_count(v) for n, v in each(fleet, "IO.puts(Hello.Counter.value())").items()}
    result = hot.edeliver("rollback", "hot", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert report(result)["routes"] == dict.fromkeys(fleet.names, f"hot: {V1} is old on the node")
    assert each(fleet, "IO.puts(System.pid())") == pids
    infos = each(fleet, "IO.inspect(Hello.Counter.info())")
    assert infos == {n: f'%{{code_version: "{V1}", count: {counts[n]}}}' for n in fleet.names}
    assert set(each(fleet, "IO.inspect(Code.ensure_loaded?(Hello.Greeter))").values()) == {"false"}
    status = json.loads(hot.edeliver("status", "hot", "--json").stdout)["nodes"]
    assert {(r["running_version"], r["current_version"]) for r in status} == {(V1, V1)}


def test_a_code_change_raising_on_one_node_puts_every_node_back_on_v1(hot: Project) -> None:
    """one_for_all + rollback: node2 restarts in place into v1 (state lost), the rest downgrade."""
    fleet = hot.fleet
    failing = fleet.node("node2")
    put_shared(failing, "hello.code_change_raises", "yes")
    try:
        result = hot.edeliver("upgrade", "hot", "--json")
    finally:
        put_shared(failing, "hello.code_change_raises", None)
    assert result.returncode == 1, result.stdout + result.stderr
    summary = report(result)
    reason = summary["nodes"]["node2"]["reason"]
    assert "code_change" in reason and "in-memory state is lost" in reason, reason
    assert {row["state"] for row in summary["nodes"].values()} == {"rolled_back"}
    assert set(each(fleet, "IO.puts(Hello.version())").values()) == {V1}
    infos = each(fleet, "IO.puts(Hello.Counter.info().code_version)")
    assert set(infos.values()) == {V1}
    status = json.loads(hot.edeliver("status", "hot", "--json").stdout)["nodes"]
    assert {(r["running_version"], r["current_version"]) for r in status} == {(V1, V1)}
