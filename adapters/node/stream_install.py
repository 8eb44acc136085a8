"""A pushed release unpacked as it arrives: one pass over its bytes on the node.

The deployer sends one script, then the release, on one channel's stdin. On the node, `tee`
hands each block at once to the upload file, to `sha256sum`, and to `tar -x` into
`releases/.<v>.partial`, whose verbose output is the listing the install's safety check reads
(`UNPACK_LISTING`: the entries it wrote), so the node never reads the tarball back and
decompresses it once (it used to read it three times: hash, listing, unpack). Nothing in
`.partial` is ever booted: only if the hash matches are the upload renamed into place and the
listing kept beside it (`<upload>.listing`); else the upload, the listing and the unpacked dir
go. The listing is printed too: the install step checks it, as for any upload, and renames
the dir into place in the same script as its other work (`install_scripts.install_state_script`)
when the listing on the node is still the one it checked.

The deployer already found the file's entries safe (`sftp_upload.local_problems`) before any
byte left; GNU tar also refuses `..` members and defers links that leave the root, so an
archive that passed neither check still writes nothing outside `.partial`.

The script's length comes first on stdin, then the script, read exactly with `dd bs=1`, so
that the release that follows is left for the script's own commands.
"""

from __future__ import annotations

import shlex

from edeliver.adapters.node.archive_check import LISTING, UNPACK_LISTING
from edeliver.adapters.node.install_scripts import PRIVATE_UPLOADS
from edeliver.adapters.node.node_scripts import RUN_NAME, Layout, checked_version

q = shlex.quote


def streaming_remote_sh(run_name: str) -> str:
    """The command line of a streamed install: reads the script's length, the script, then
    runs it under a shell named `run_name` (see `node_scripts.named_remote_sh`) with the rest
    of stdin, the release, as its input."""
    if not RUN_NAME.match(run_name):
        raise ValueError(f"not a run name: {run_name!r}")
    return (
        'sh -c \'IFS= read -r n; script="$(dd bs=1 count="$n" 2>/dev/null)"; '
        f'(eval "$script"); exit $?\' {run_name}'
    )


def stream_script(
    layout: Layout, version: str, sha256: str, size: int, *, unpack: bool = True
) -> str:
    """Exit 0: upload verified and kept, release unpacked into .partial, listing kept (and
    printed, for the deployer to check before the install places the release). Exit 4:
    the bytes were not the release's (the hash printed), everything removed. Exit 5: the unpack
    failed (the verified upload is kept, `.partial` not). Exit 7: the upload could not be
    written whole (a full disk): its partial is left for the caller to measure and remove.
    Without `unpack` (a hot upgrade's package, which release_handler unpacks), the archive is
    only listed as it comes (exit 5: not a readable gzipped tar); no `.partial` dir."""
    read = (
        f'(umask "$UM"; {UNPACK_LISTING} - -C "$T" --no-same-owner >"$W/listing")'
        if unpack
        else f'{LISTING} - >"$W/listing"'
    )
    return (
        layout.prelude()
        + "UM=$(umask)\n"  # the release keeps the user's modes; the upload stays private
        + PRIVATE_UPLOADS
        + (
            f"V={q(checked_version(version))}; F={q(layout.upload(version))}; SHA={q(sha256)}\n"
            'T="$R/.$V.partial"; W="$F.stream"\n'
            + ('(umask "$UM"; rm -rf "$T" && mkdir -p "$T") || exit 3\n' if unpack else "")
            # The upload is written anew, so under the private umask (0600): no chmod.
            + 'rm -rf "$W" "$F.listing" "$F.partial" && mkdir "$W" && mkfifo "$W/sum" || exit 3\n'
            'sha256sum <"$W/sum" >"$W/sha" &\n'
            # The unpack drains what it does not read, so `tee` never blocks on a full pipe.
            'tee "$F.partial" "$W/sum" | {\n'
            f"  {read}\n"
            "  rc=$?; cat >/dev/null; exit $rc\n}\n"
            "unpacked=$?; wait\n"
            # A short upload first: on a full disk the hash could not even be written down.
            f'if [ "$(wc -c <"$F.partial")" != {int(size)} ]; then rm -rf "$T" "$W"; exit 7; fi\n'
            'got=; { read -r got x <"$W/sha"; } 2>/dev/null\n'
            'if [ "$got" != "$SHA" ]; then\n'
            '  rm -rf "$T" "$W" "$F.partial"; echo "$got"; exit 4\nfi\n'
            'mv -f "$F.partial" "$F" || exit 3\n'
            'if [ "$unpacked" -ne 0 ]; then rm -rf "$T" "$W"; exit 5; fi\n'
            'mv -f "$W/listing" "$F.listing" && rm -rf "$W" || exit 3\n'
            # For the deployer to check now: the install then places it without reading it back.
            'cat "$F.listing" || true\n'
        )
    )
