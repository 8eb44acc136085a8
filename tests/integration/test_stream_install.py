"""The streamed install's node script, run by a local `sh` with the release on its stdin, as
the adapter sends it over SSH: one pass keeps, hashes, lists and unpacks the upload."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from edeliver.adapters.node import install_scripts
from edeliver.adapters.node import node_scripts as ns
from edeliver.adapters.node.archive_check import listing_problems
from edeliver.adapters.node.node_scripts import Layout
from edeliver.adapters.node.stream_install import stream_script, streaming_remote_sh

RUN = "edeliver-run-0123456789abcdef"


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(str(tmp_path / 'it\'s a "deploy" $HOME dir'), "hello")


def release_tarball(tmp_path: Path, version: str) -> tuple[bytes, str]:
    source = tmp_path / f"src-{version}"
    (source / "bin").mkdir(parents=True)
    (source / "bin" / "hello").write_text("#!/bin/sh\n")
    (source / "releases" / version).mkdir(parents=True)
    (source / "releases" / "COOKIE").write_text("secret")
    archive = tmp_path / f"hello-{version}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for top in ("bin", "releases"):
            tar.add(source / top, arcname=top)
    data = archive.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def streamed(script: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    """What the adapter writes on the channel: the script's length, the script, the data."""
    body = script.encode()
    return subprocess.run(
        streaming_remote_sh(RUN), shell=True, input=b"%d\n%s%s" % (len(body), body, data),
        capture_output=True, check=False,
    )  # fmt: skip


def run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ns.REMOTE_SH, shell=True, input=script, capture_output=True, text=True, check=False
    )


def test_a_streamed_release_is_kept_verified_listed_and_unpacked_then_placed_by_install(
    layout: Layout, tmp_path: Path
) -> None:
    """After the stream: the private upload, its safe listing, the unpacked .partial; install
    then reads the kept listing and renames the dir into place, its COOKIE private."""
    data, sha = release_tarball(tmp_path, "1.0.0")
    done = streamed(stream_script(layout, "1.0.0", sha, len(data)), data)
    assert done.returncode == 0, done.stderr
    upload = Path(layout.upload("1.0.0"))
    assert upload.read_bytes() == data and stat.S_IMODE(upload.stat().st_mode) == 0o600
    said = run(install_scripts.install_state_script(layout, "1.0.0")).stdout.splitlines()
    assert said[0] == "streamed" and listing_problems(said[1:]) == []
    assert any(line.endswith(" bin/hello") for line in said[1:])
    assert run(install_scripts.place_script(layout, "1.0.0")).returncode == 0
    release = Path(layout.path, "releases", "1.0.0")
    assert (release / "bin" / "hello").is_file()
    assert stat.S_IMODE((release / "releases" / "COOKIE").stat().st_mode) & 0o077 == 0
    assert run(install_scripts.install_state_script(layout, "1.0.0")).stdout == "installed\n"
    assert sorted(os.listdir(upload.parent)) == [upload.name]


def test_streamed_bytes_that_are_not_the_release_leave_nothing_behind(
    layout: Layout, tmp_path: Path
) -> None:
    """A hash mismatch exits 4 with the hash it got: no upload, no partial, no unpacked dir."""
    data, _ = release_tarball(tmp_path, "1.0.0")
    done = streamed(stream_script(layout, "1.0.0", "0" * 64, len(data)), data)
    assert (done.returncode, done.stdout.decode().strip()) == (4, hashlib.sha256(data).hexdigest())
    assert os.listdir(Path(layout.upload("1.0.0")).parent) == []
    assert os.listdir(Path(layout.path, "releases")) == []
    assert run(install_scripts.install_state_script(layout, "1.0.0")).stdout == "missing\n"


def test_a_refused_streamed_upload_goes_with_its_listing_and_unpacked_dir(
    layout: Layout, tmp_path: Path
) -> None:
    """What install removes when the kept listing is refused: nothing of it can be installed."""
    data, sha = release_tarball(tmp_path, "1.0.0")
    assert streamed(stream_script(layout, "1.0.0", sha, len(data)), data).returncode == 0
    unpacked = f"{layout.path}/releases/.1.0.0.partial"
    assert (
        run(install_scripts.remove_upload_script(layout.upload("1.0.0"), unpacked)).returncode == 0
    )
    assert os.listdir(Path(layout.upload("1.0.0")).parent) == []
    assert os.listdir(Path(layout.path, "releases")) == []


def test_an_upload_written_short_is_left_for_the_free_space_report(
    layout: Layout, tmp_path: Path
) -> None:
    """Fewer bytes on disk than were sent (a full disk) exits 7 before the hash is looked at:
    the partial stays for the deployer to measure and remove, nothing unpacked stays."""
    data, sha = release_tarball(tmp_path, "1.0.0")
    done = streamed(stream_script(layout, "1.0.0", sha, len(data) + 1), data)
    assert done.returncode == 7, done.stderr
    assert os.listdir(Path(layout.upload("1.0.0")).parent) == ["hello-1.0.0.tar.gz.partial"]
    assert os.listdir(Path(layout.path, "releases")) == []


def test_a_streamed_release_whose_listing_was_checked_is_installed_by_one_script(
    layout: Layout, tmp_path: Path
) -> None:
    """The stream prints the listing it kept; given that listing's hash, the install's first
    script places the release and runs the rest of the install (each part marked), and a
    listing that differs falls back to `streamed`, for the deployer to read it."""
    data, sha = release_tarball(tmp_path, "1.0.0")
    done = streamed(stream_script(layout, "1.0.0", sha, len(data)), data)
    listing = done.stdout.decode()
    assert listing_problems(listing.splitlines()) == [] and "bin/hello" in listing
    then = "echo part=rest\necho finished\n"
    other = hashlib.sha256(b"another listing").hexdigest()
    said = run(install_scripts.install_state_script(layout, "1.0.0", then, other)).stdout
    assert said.splitlines()[0] == "streamed"
    checked = hashlib.sha256(listing.encode()).hexdigest()
    done_install = run(install_scripts.install_state_script(layout, "1.0.0", then, checked))
    assert done_install.returncode == 0, done_install.stderr
    parts = install_scripts.script_parts(done_install.stdout)
    assert parts == {"": "placed\n", "place": "", "rest": "finished\n"}
    assert Path(layout.path, "releases", "1.0.0", "bin", "hello").is_file()
    again = run(install_scripts.install_state_script(layout, "1.0.0", then, checked)).stdout
    assert install_scripts.script_parts(again) == {"": "installed\n", "rest": "finished\n"}


def test_a_failing_part_of_an_install_ends_it_with_its_status(
    layout: Layout, tmp_path: Path
) -> None:
    """The rest of an install (here a part exiting 6, as a missing secret file does) ends
    the script with that part's status, the part named last in its output."""
    data, sha = release_tarball(tmp_path, "1.0.0")
    listing = streamed(stream_script(layout, "1.0.0", sha, len(data)), data).stdout
    checked = hashlib.sha256(listing).hexdigest()
    then = "echo part=env\n(\necho missing >&2; exit 6\n) || exit $?\necho part=state\n"
    done = run(install_scripts.install_state_script(layout, "1.0.0", then, checked))
    assert (done.returncode, done.stderr) == (6, "missing\n")
    assert list(install_scripts.script_parts(done.stdout)) == ["", "place", "env"]
