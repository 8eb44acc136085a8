"""A 1,000-node simulated deployment on the in-memory fakes, events on SQLite.

one_for_all + rollback, max_parallel 50, the node at position 700 fails to start: the first 13
batches update, batch 14 fails, and every updated node is rolled back. Prints wall time, events
written, peak memory, and the time to replay the deployment from the stored events.

    .venv/bin/python bench/simulated_rollout.py [--nodes 1000] [--fail-at 700] [--max-parallel 50]
                                                [--tasks 0] [--trace-memory]

`--tasks N` adds N shell tasks per node (alternately before and after the unpack, each with a
TaskRan event): the cost of tasks themselves on the core, with commands that return at once.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edeliver.adapters.events.event_store import store_settings
from edeliver.adapters.local.clock import FakeClock
from edeliver.adapters.node.fakes import FakeHost, Faults, InMemoryNodeShells
from edeliver.adapters.store.memory_store import InMemoryReleaseStore
from edeliver.core.domain.config_parser import parse_config
from edeliver.core.domain.tasks import TaskSpec
from edeliver.core.usecases.loaded_task import LoadedTask
from edeliver.core.usecases.rollout import deploy
from edeliver.core.usecases.service import Deployments, replay
from edeliver.core.usecases.services import Services
from tests.support.simulation import artifact, config_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--fail-at", type=int, default=700)
    parser.add_argument("--max-parallel", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=0)
    parser.add_argument(
        "--trace-memory", action="store_true",
        help="also trace the Python heap (tracemalloc slows the run about twofold)",
    )  # fmt: skip
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="edeliver-bench-"))
    text = config_text(args.nodes, max_parallel=args.max_parallel, step_timeout=60)
    config = parse_config(text, "bench.toml")
    hosts = {
        name: FakeHost(current="0.9.0", running="0.9.0", releases={"0.9.0"})
        for name in config.nodes
    }
    faults = Faults()
    faults.add(f"n{args.fail_at}", "activate")
    env = store_settings(directory, f"sqlite:///{directory / 'events.db'}", {})

    if args.trace_memory:
        tracemalloc.start()
    started = time.perf_counter()
    deployments = Deployments(env=env)
    services = Services(
        deployments,
        InMemoryNodeShells(hosts, faults),
        InMemoryReleaseStore([artifact("1.0.0")]),
        FakeClock(),
        "bench@localhost",
        tasks=_tasks(args.tasks),
    )
    deployment = asyncio.run(deploy(services, config, "prod", "1.0.0"))
    wall = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    traced = (
        f"{traced_peak / 2**20:.0f} MB traced Python heap"
        if args.trace_memory
        else "heap not traced"
    )
    tracemalloc.stop()
    events = deployments.recorder.max_notification_id() or 0
    deployments.close()

    started = time.perf_counter()
    reader = Deployments(env=env)
    replayed = reader.repository.get(deployment.id, projector_func=replay)
    replay_s = time.perf_counter() - started
    reader.close()

    states: dict[str, int] = {}
    for state in deployment.states.values():
        states[state] = states.get(state, 0) + 1
    running = {h.running for h in hosts.values()}
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"nodes                {args.nodes} (max_parallel {args.max_parallel}, failure at n{args.fail_at}, {args.tasks} tasks per node)"
    )
    print(
        f"outcome              {deployment.outcome}: {states}; nodes now run {sorted(map(str, running))}"
    )
    print(f"wall time            {wall:.2f} s   (target < 2 s)")
    print(f"events written       {events}")
    print(
        f"peak memory          {rss_mb:.0f} MB max RSS of the process, {traced}   (target < 300 MB)"
    )
    print(f"replay               {replay_s:.2f} s for {replayed.version} events   (target < 0.3 s)")
    assert replayed.states == deployment.states, "replay differs from the live run"


def _tasks(count: int) -> list[LoadedTask]:
    stages = ("pre_extract_release_archive", "post_extract_release_archive")
    return [
        LoadedTask(TaskSpec(f"t{i:03}", stages[i % 2], "bench"), script=f"echo {i}")
        for i in range(count)
    ]


if __name__ == "__main__":
    main()
