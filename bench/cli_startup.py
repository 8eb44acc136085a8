"""How long the `edeliver` command takes to start: the median wall time of `edeliver --help`,
`edeliver --version` and `edeliver plan prod` (a one-node project) over N runs each, with the
median CPU time (user + system) beside it, which a loaded machine disturbs less; and with
`--imports` the slowest imports of each command as `python -X importtime` reports them
(cumulative, including what they import).

    .venv/bin/python bench/cli_startup.py [--runs 10] [--imports 8]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from race import compile_edeliver

from tests.support.one_node_project import one_node_project

EDELIVER = Path(sys.executable).with_name("edeliver")
COMMANDS = (["--help"], ["--version"], ["plan", "prod"])


def timed(argv: list[str], project: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one run."""
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([str(EDELIVER), *argv], cwd=project, check=True, capture_output=True)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def slowest_imports(argv: list[str], project: Path, count: int) -> list[tuple[int, str]]:
    """The modules whose import (with what they import) took longest, in microseconds."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "edeliver.cli", *argv],
        cwd=project, check=True, capture_output=True, text=True,
    )  # fmt: skip
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        rows.append((int(cumulative), name.rstrip()))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--imports", type=int, default=0, help="show the N slowest imports")
    options = parser.parse_args()
    compile_edeliver()
    with tempfile.TemporaryDirectory() as tmp:
        project = one_node_project(Path(tmp))
        print(f"edeliver startup, median of {options.runs} runs (load {os.getloadavg()[0]:.1f})")
        for argv in COMMANDS:
            timed(argv, project)  # warm-up: files in the page cache
            walls, cpus = zip(*(timed(argv, project) for _ in range(options.runs)), strict=True)
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            print(f"  edeliver {' '.join(argv):<12} {wall:6.3f} s wall  {cpu:6.3f} s CPU")
            for cumulative, name in slowest_imports(argv, project, options.imports):
                print(f"      {cumulative / 1e6:6.3f} s  import {name.strip()}")


if __name__ == "__main__":
    main()
