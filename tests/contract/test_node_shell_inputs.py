"""What the asyncssh NodeShell does with awkward input, asked of a real sshd node afterwards:
`[commands]` of any shape, private uploads and cookies, unsafe archives refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.adapters.node.node_scripts import MIX_START, STATUS_FILE_HEALTH, ReleaseCommands
from edeliver.adapters.node.ssh import AsyncsshNodeShells
from edeliver.adapters.node.transfer import sha256_of
from edeliver.core.domain.errors import NodeError
from edeliver.core.domain.model import Artifact
from tests.contract.conftest import FleetWorld, WorldMaker
from tests.contract.test_node_shell_contract import V1, V2, deploy
from tests.support.faults_node import modes, tampered_release

# Comments, `#` mid-line, newlines, quotes, `$`, backslashes and a lone `}` / `)`: each broke
# the scripts the commands were inlined into.
AWKWARD = ReleaseCommands(
    start=f"# start the release (it's ours) }} )\n{MIX_START}  # then wait for nothing\n",
    stop='why="a \\"quoted\\" $HOME \\\\ value" # a comment\nbin/{app} stop # ends with a comment',
    health=f"{STATUS_FILE_HEALTH} # up? )\n",
)


@pytest.mark.slow
async def test_commands_with_comments_newlines_and_quotes_deploy_and_roll_back(
    module_fleet: LocalFleet, open_world: WorldMaker
) -> None:
    """v1, then v2, then a rollback to v1, with every command holding `#` and newlines."""
    shells = AsyncsshNodeShells(known_hosts=str(module_fleet.known_hosts), commands=AWKWARD)
    world = await open_world(shells=shells)
    try:
        await deploy(world.shell, world.artifact(V1))
        v2 = world.artifact(V2)
        await deploy(world.shell, v2)
        assert await world.running_version() == V2
        await world.shell.roll_back(v2, V1)
        facts = await world.shell.probe()
        assert (facts.current_version, facts.running_version) == (V1, V1)
        assert await world.running_version() == V1
    finally:
        await world.shell.close()


@pytest.mark.slow
async def test_uploads_and_cookies_are_readable_by_the_deploy_user_only(
    fleet_world: FleetWorld,
) -> None:
    """After a deploy the node's `stat` says: uploads dir 0700, tarball 0600, COOKIE files
    not readable by group or others."""
    await deploy(fleet_world.shell, fleet_world.artifact(V1))
    fleet, node = fleet_world.fleet, fleet_world.node
    found = modes(fleet, node, ".edeliver/uploads", ".edeliver/uploads/*")
    assert found == {".edeliver/uploads": "700", f".edeliver/uploads/hello-{V1}.tar.gz": "600"}
    cookies = modes(fleet, node, f"releases/{V1}/releases/COOKIE")
    assert cookies and all(int(mode, 8) & 0o077 == 0 for mode in cookies.values())


def tampered(world: FleetWorld, scratch: Path) -> Artifact:
    """v2 with a `bin/evil -> /tmp` link owned by "evil user", its manifest checksum matching."""
    v2 = world.artifact(V2)
    path = tampered_release(Path(v2.location), scratch / f"tampered-{v2.name}")
    return replace(v2, location=str(path), sha256=sha256_of(path), size=path.stat().st_size)


@pytest.mark.slow
async def test_a_tampered_archive_is_refused_on_this_machine_before_any_upload(
    fleet_world: FleetWorld, tmp_path: Path
) -> None:
    """Push: prepare names the entry and the version; not a byte reached the node."""
    await deploy(fleet_world.shell, fleet_world.artifact(V1))
    evil = tampered(fleet_world, tmp_path)
    with pytest.raises(NodeError) as refused:
        await fleet_world.shell.prepare(evil)
    said = str(refused.value)
    assert f"(version {V2})" in said and "symlink 'bin/evil' points outside" in said
    assert "nothing was uploaded" in said
    uploads = sorted(p.name for p in fleet_world.local(".edeliver/uploads").iterdir())
    assert uploads == [f"hello-{V1}.tar.gz"]


@pytest.mark.slow
async def test_a_tampered_archive_already_on_the_node_is_refused_and_deleted(
    fleet_world: FleetWorld, tmp_path: Path
) -> None:
    """As after a pull: the node's numeric listing finds the link despite the owner's space;
    install refuses, deletes the upload, and nothing is unpacked."""
    await deploy(fleet_world.shell, fleet_world.artifact(V1))
    evil = tampered(fleet_world, tmp_path)
    upload = fleet_world.local(f".edeliver/uploads/{evil.name}")
    upload.write_bytes(Path(evil.location).read_bytes())
    with pytest.raises(NodeError, match=f"(?s)version {V2}.*symlink 'bin/evil' points outside"):
        await fleet_world.shell.install(evil)
    assert not upload.exists()
    facts = await fleet_world.shell.probe()
    assert (facts.current_version, facts.running_version, facts.releases) == (V1, V1, (V1,))
    assert not fleet_world.local(f"releases/.{V2}.partial").exists()


@pytest.mark.slow
async def test_the_output_kept_of_a_command_is_its_last_64_kib(fleet_world: FleetWorld) -> None:
    """A command printing 20 MiB: its result holds a note of what was dropped and the last
    64 KiB, ending with its last line; its exit status is kept."""
    script = "yes 0123456789abcdef | head -c 20971520; echo the-end; exit 3"
    said = await fleet_world.shell.run_command(script, {})
    assert said.status == 3
    assert said.output.startswith("[") and "earlier bytes of output dropped]" in said.output
    assert said.output.rstrip().endswith("the-end")
    assert len(said.output) < 65 * 1024
