"""How long a local fleet of N sshd nodes takes to start (`LocalFleet.start`, each node in its own
mount and pid namespace) and how long until every node has answered one command over SSH.

    .venv/bin/python bench/fleet_start.py [--nodes 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncssh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edeliver.adapters.node.fleet_inventory import FleetNode
from edeliver.adapters.node.local_fleet import LocalFleet


async def _all_answer(fleet: LocalFleet) -> None:
    limit = asyncio.Semaphore(10)  # sshd's MaxStartups default throttles bursts of connects

    async def answer(node: FleetNode) -> None:
        async with limit, asyncssh.connect(
            node.host, node.port, username=node.user, client_keys=[str(fleet.client_key)],
            known_hosts=str(fleet.known_hosts), agent_path=None,
        ) as conn:  # fmt: skip
            await conn.run("id -un", check=True)

    await asyncio.gather(*(answer(node) for node in fleet.nodes))


def one(nodes: int) -> tuple[float, float]:
    """Seconds to start the fleet, then seconds until every node answered."""
    root = Path(tempfile.mkdtemp(prefix="edeliver-bench-fleet-"))
    fleet = LocalFleet(root / "fleet", nodes)
    try:
        started = time.monotonic()
        fleet.start()
        up = time.monotonic() - started
        started = time.monotonic()
        asyncio.run(_all_answer(fleet))
        return up, time.monotonic() - started
    finally:
        fleet.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    runs = [one(args.nodes) for _ in range(args.runs)]
    starts, answers = [r[0] for r in runs], [r[1] for r in runs]
    print(
        f"{args.nodes} nodes, {args.runs} runs (load average {load:.1f} before): start median "
        f"{statistics.median(starts):.2f}s (min {min(starts):.2f}s), every node answered "
        f"{statistics.median(answers):.2f}s later (min {min(answers):.2f}s)"
    )


if __name__ == "__main__":
    main()
