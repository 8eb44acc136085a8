"""`edeliver demo`: three local nodes, a good release, then one that fails to boot, rolled back.

Everything is real: sshd nodes on 127.0.0.1 (each in its own mount and pid namespace, with its
own epmd), `mix release` builds of examples/hello, BEAM nodes started and health-checked over
SSH. Only the nodes are local; the product code is the same that deploys to real hosts.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edeliver.cli.app import TRY, app, exits_on_errors, runtime_of
from edeliver.cli.node_commands import status_line
from edeliver.cli.rollout_commands import build_into_store, rollout_and_report
from edeliver.core.domain.errors import EdeliverError, UsageError

if TYPE_CHECKING:
    from edeliver.cli.composition import LocalFleet, Runtime

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hello"
GOOD, BROKEN = "0.1.0", "0.2.0"


def prepare_project(directory: Path, fleet: LocalFleet, environment: str, policy: str) -> Path:
    """A copy of examples/hello whose edeliver.toml targets the fleet's nodes."""
    if not (EXAMPLE / "mix.exs").is_file():
        raise UsageError(f"{EXAMPLE}: not found; `edeliver demo` runs from a clone of edeliver")
    project = directory / "hello"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("_build", "deps", ".deliver"))
    names = ", ".join(f'"{n}"' for n in fleet.names)
    (project / ".deliver").mkdir()
    (project / ".deliver/edeliver.toml").write_text(
        f'app = "hello"\nknown_hosts = "{fleet.known_hosts}"\n\n{fleet.toml_nodes()}\n'
        f"[environments.{environment}]\nnodes = [{names}]\n{policy}\n"
    )
    return project


def build_example(runtime: Runtime, version: str, variant: str = "good") -> None:
    env = {"HELLO_VERSION": version, "HELLO_VARIANT": variant, "HEX_OFFLINE": "1"}
    build_into_store(runtime, env=env)


@app.command(rich_help_panel=TRY)
@exits_on_errors
def demo(
    ctx: typer.Context,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the nodes running.")] = False,
    nodes: Annotated[int, typer.Option(min=1, max=20, help="How many nodes.")] = 3,
) -> None:
    """Start local nodes, deploy examples/hello, then a release that fails to boot: rolled back.

    Example: edeliver demo --nodes 5 --keep
    """
    from edeliver.cli.composition import local_fleet

    root = Path(tempfile.mkdtemp(prefix="edeliver-demo-"))
    fleet = local_fleet(root / "fleet", nodes)
    try:
        ok = _run_demo(runtime_of(ctx), root, fleet)
    finally:
        if keep:
            typer.echo(
                f"\nnodes left running; state in {root}; stop them with `kill` of their init"
            )
        else:
            fleet.stop()
            shutil.rmtree(root, ignore_errors=True)
    if not ok:
        raise EdeliverError("the demo did not end as described above")


def _run_demo(parent: Runtime, root: Path, fleet: LocalFleet) -> bool:
    from edeliver.cli.composition import status_file_health
    from edeliver.core.usecases.rollout import deploy

    _say(f"starting {fleet.size} local sshd nodes")
    fleet.start()
    project = prepare_project(
        root, fleet, "demo", 'strategy = "one_for_all"\nfallback = "rollback"'
    )
    with (project / ".deliver/edeliver.toml").open("a") as toml:
        # hello writes a status file once its tree is up: a health check that boots no VM.
        toml.write(f"\n[commands]\nhealth = {json.dumps(status_file_health())}\n")
    runtime = dataclasses.replace(parent, project=project)
    config = runtime.config
    _say(f"building hello {GOOD}, and {BROKEN} which fails to boot")
    build_example(runtime, GOOD)
    build_example(runtime, BROKEN, "broken")
    _say(f"deploying {GOOD} (one_for_all + rollback)")
    first = rollout_and_report(runtime, False, lambda s: deploy(s, config, "demo", GOOD))
    _show_status(runtime)
    _say(f"deploying {BROKEN}: it will not boot, so every node goes back to {GOOD}")
    second = rollout_and_report(runtime, False, lambda s: deploy(s, config, "demo", BROKEN))
    rows = _show_status(runtime)
    on_good = all(r["reachable"] and r["running_version"] == GOOD for r in rows)
    _say("every node runs " + GOOD if on_good else "NOT every node runs " + GOOD)
    return first.outcome == "succeeded" and second.outcome == "failed" and on_good


def _show_status(runtime: Runtime) -> list[dict[str, object]]:
    import asyncio

    from edeliver.core.usecases.probes import probe_all

    rows = asyncio.run(probe_all(runtime.node_shells(), runtime.config.nodes_of("demo")))
    for row in rows:
        typer.echo("  " + status_line(row))
    return rows


def _say(text: str) -> None:
    typer.secho(f"\n==> {text}", bold=True)
