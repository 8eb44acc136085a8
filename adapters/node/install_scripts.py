"""A release onto a node: the upload's state, its verification, the pull of a store's fetch
command, the listing checked before anything is unpacked, the unpack and the rename into place.
"""

from __future__ import annotations

from dataclasses import dataclass

from edeliver.adapters.node.archive_check import LISTING
from edeliver.adapters.node.node_scripts import Layout, checked_version, q

# Uploads hold the release's COOKIE: only the deploy user may read them, or list the dir.
# (The umask comes after the mkdir: the deploy path and shared/ keep the user's own modes.)
PRIVATE_UPLOADS = (
    '{ [ -d "$U" ] && [ -d "$P/shared" ] || mkdir -p "$U" "$P/shared"; } && chmod 700 "$U" '
    "|| exit 3\numask 077\n"
)


# Measured before the partial goes: a disk it filled is full now, not after.
_SPACE_AND_REMOVE = (
    'echo "free_kb=$(df -Pk "$(dirname "$F")" 2>/dev/null | awk \'NR == 2 {print $4}\')"\n'
    'echo "partial=$(wc -c <"$F" 2>/dev/null)"\n'
    'rm -f "$F"\n'
)


def upload_state_script(layout: Layout, version: str, sha256: str) -> str:
    """Print `done` if the verified upload is there; drop a wrong one; print the partial size."""
    return (
        layout.prelude()
        + PRIVATE_UPLOADS
        + (
            f"F={q(layout.upload(version))}; SHA={q(sha256)}\n"
            'if [ -f "$F" ]; then\n'
            '  [ "$(sha256sum <"$F" | cut -c1-64)" = "$SHA" ] && chmod 600 "$F" && {\n'
            "    echo done; exit 0\n  }\n"
            '  rm -f "$F"\n'
            "fi\n"
            'if [ -f "$F.partial" ]; then echo "partial=$(wc -c <"$F.partial")"; fi\n'
        )
    )


def finish_upload_script(layout: Layout, version: str, sha256: str) -> str:
    """Hash the partial upload on the node: rename it if it matches, else delete it (exit 4)."""
    return layout.prelude() + (
        f"F={q(layout.upload(version))}; SHA={q(sha256)}\n"
        'got=$(sha256sum <"$F.partial" | cut -c1-64) || exit 3\n'
        'if [ "$got" = "$SHA" ]; then\n'
        '  chmod 600 "$F.partial" && mv -f "$F.partial" "$F" && exit 0; exit 3\nfi\n'
        'rm -f "$F.partial"; echo "$got"; exit 4\n'
    )


def fetch_script(layout: Layout, version: str, fetch: str) -> str:
    """Run the store's fetch command into the partial upload (pull mode); finish_upload checks it.

    `fetch` is built by a store adapter with every value quoted, never from user input.
    """
    return (
        layout.prelude()
        + PRIVATE_UPLOADS
        + (
            f"F={q(layout.upload(version))}\n"
            f'{{ {fetch}\n}} >"$F.partial" || {{\n'
            '  F="$F.partial"\n'
            + _SPACE_AND_REMOVE
            + '  echo "fetching the release from the store failed" >&2\n'
            "  exit 7\n}\n"
        )
    )


@dataclass(frozen=True)
class UploadSpace:
    """After a failed upload: the free bytes where it went, and how far it had got."""

    free_bytes: int
    partial_bytes: int


def failed_upload_script(partial: str) -> str:
    """Print the free space beside `partial` and its size, then remove it."""
    return f"F={q(partial)}\n" + _SPACE_AND_REMOVE


def parse_failed_upload(output: str) -> UploadSpace | None:
    fields = dict(line.partition("=")[::2] for line in output.splitlines())
    free, partial = fields.get("free_kb", "").strip(), fields.get("partial", "").strip() or "0"
    if not (free.isdigit() and partial.isdigit()):
        return None
    return UploadSpace(int(free) * 1024, int(partial))


# -- install ---------------------------------------------------------------------------------


def install_state_script(
    layout: Layout, version: str, then: str = "", checked_listing: str | None = None
) -> str:
    """`installed`, `missing` (no verified upload), `streamed` then the `LISTING` kept when the
    upload was unpacked as it came (see `stream_install`), or `listing` then its `LISTING`.

    When the kept listing is the one the deployer already found safe (`checked_listing`, its
    sha256), `placed`: the unpacked dir is renamed into place at once (`part=place`). Once the
    release is installed (or found so), `then` runs: the rest of the install, in one script."""
    checked = q(checked_listing or "")
    return layout.prelude() + (
        f"V={q(checked_version(version))}; F={q(layout.upload(version))}\n"
        f"then_install() {{\n{then}:\n}}\n"
        'if complete "$V"; then echo installed; then_install; exit 0; fi\n'
        'if [ ! -f "$F" ]; then echo missing; exit 0; fi\n'
        'if [ -d "$R/.$V.partial" ] && [ -f "$F.listing" ]; then\n'
        f"  if [ -n {checked} ] && "
        f'[ "$(sha256sum <"$F.listing" | cut -c1-64)" = {checked} ]; then\n'
        '    echo placed; echo part=place; T="$R/.$V.partial"; D="$R/$V"\n'
        + _PLACE
        + '    rm -f "$F.listing"; then_install; exit 0\n  fi\n'
        '  echo streamed; cat "$F.listing" && exit 0; exit 5\nfi\n'
        f'echo listing; {LISTING} "$F" || exit 5\n'
    )


def script_parts(output: str) -> dict[str, str]:
    """An install script's output by part: "" (what it found), then each `part=<name>` line's
    name and what followed it; the last part named is the one that ran last."""
    parts, name = {"": ""}, ""
    for line in output.splitlines(keepends=True):
        if line.startswith("part="):
            name = line.removeprefix("part=").strip()
            parts[name] = ""
        else:
            parts[name] += line
    return parts


def listing_script(upload: str) -> str:
    """The `LISTING` of an uploaded archive (exit 5: not a readable gzipped tar)."""
    return f"{LISTING} {q(upload)} || exit 5\n"


def remove_upload_script(upload: str, unpacked: str | None = None) -> str:
    """Delete a refused upload, any partial of it and its listing, and the dir it was unpacked
    into as it came (`unpacked`): it must not be installed later."""
    files = " ".join(q(upload + suffix) for suffix in ("", ".partial", ".listing"))
    return f"rm -f {files}\n" + (f"rm -rf {q(unpacked)}\n" if unpacked else "")


def private_cookies(root: str) -> str:
    """Make the COOKIE files of the release root `root` (a shell word) unreadable to others:
    the cookie lets whoever reads it run code in the VM as the deploy user."""
    return (
        f"for c in {root}/releases/COOKIE {root}/releases/*/COOKIE; do\n"
        '  if [ -f "$c" ]; then chmod go-rwx "$c" || exit 3; fi\ndone\n'
    )


def unpack_script(layout: Layout, version: str, then: str = "") -> str:
    """Unpack into releases/.<v>.partial, check it is that release, rename it into place, then
    `then` (the rest of the install)."""
    return layout.prelude() + (
        f"V={q(checked_version(version))}; F={q(layout.upload(version))}\n"
        'T="$R/.$V.partial"; D="$R/$V"\n'
        'rm -rf "$T" && mkdir -p "$T" || exit 3\n'
        'tar -xzf "$F" -C "$T" --no-same-owner >&2 || { rm -rf "$T"; exit 5; }\n' + _PLACE + then
    )


def place_script(layout: Layout, version: str, then: str = "") -> str:
    """Check that releases/.<v>.partial, unpacked as the upload came, is that release, and
    rename it into place; its listing, read once the deployer found it safe, goes; then
    `then` (the rest of the install)."""
    return layout.prelude() + (
        f"V={q(checked_version(version))}; F={q(layout.upload(version))}\n"
        'T="$R/.$V.partial"; D="$R/$V"\n'
        '[ -d "$T" ] || { echo "releases/.$V.partial is gone: install again" >&2; exit 5; }\n'
        + _PLACE
        + 'rm -f "$F.listing"\n'
        + then
    )


# The end of an install: $T is release $V of $APP, its cookies private, renamed to $D.
_PLACE = (
    'if [ ! -f "$T/bin/$APP" ] || [ ! -d "$T/releases/$V" ]; then\n'
    '  rm -rf "$T"; echo "not a release of $APP $V: no bin/$APP or releases/$V" >&2; exit 6\n'
    "fi\n" + private_cookies('"$T"') + 'touch "$T" && rm -rf "$D" && mv -T "$T" "$D" || exit 3\n'
)
