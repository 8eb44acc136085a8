"""The ReleaseStore port on S3 (or any S3-compatible endpoint) with boto3.

Layout: `<prefix>/<app>/<version>/<app>-<version>.tar.gz` beside `manifest.json`, the manifest
written last (and create-only), so a listing never shows a half-stored version. A hot-upgrade
package from FROM lives below the version it upgrades to, as in the local store:
`<prefix>/<app>/<version>/upgrades/<FROM>/`. The boto3 client, its calls on worker threads and
its errors turned into ours are `s3_calls`'s.

Edeliver's own full-file sha256 is in the manifest (S3's multipart checksums are composite): a
download is verified against it, on this machine for a push and on the node for a pull.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import botocore.exceptions

from edeliver.adapters.node.transfer import VerifiedCache, sha256_of
from edeliver.adapters.store.local_store import (
    MANIFEST,
    from_manifest,
    manifest_text,
    package_from_manifest,
    place_of,
    refuse_another_build,
    stored_as,
    upgrade_place,
)
from edeliver.adapters.store.s3_calls import S3Calls, error_code
from edeliver.core.domain.errors import NotFoundError, UsageError
from edeliver.core.domain.model import Artifact
from edeliver.core.domain.versions import version_key


class S3ReleaseStore:
    """Releases in an S3 bucket under a prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        cache: Path,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        checksums: str = "when_supported",
        url_expiry: int = 900,
    ) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.cache, self.url_expiry = VerifiedCache(cache), url_expiry
        self.s3 = S3Calls(
            self.url, bucket, endpoint_url=endpoint_url, region=region, profile=profile,
            checksums=checksums,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    # -- the port ----------------------------------------------------------------------------

    async def versions(self, app: str) -> list[str]:
        base = self._key(app) + "/"
        keys = await self.s3.call(f"listing {app}", self._list, base)
        # Only `<version>/manifest.json`: the upgrade packages' manifests lie deeper.
        found = [k[len(base) :].partition("/") for k in keys]
        return sorted((v for v, _, rest in found if rest == MANIFEST), key=version_key)

    async def artifact(self, app: str, version: str) -> Artifact:
        key = self._key(app, version, MANIFEST)
        text = await self.s3.call(f"reading {app} {version}", self._read, key)
        if text is None:
            known = ", ".join(await self.versions(app)) or "none"
            raise NotFoundError(
                f"version {version} of {app} is not in the store {self.url} (it has: {known})"
            )
        where = f"s3://{self.bucket}/{key}"
        location = self._key(app, version, f"{app}-{version}.tar.gz")
        return from_manifest(text, where, location, (app, version))

    async def upgrade(self, app: str, from_version: str, version: str) -> Artifact | None:
        """The hot-upgrade package from `from_version` to `version`, if one was built."""
        place = upgrade_place(app, from_version, version)
        doing = f"reading the upgrade of {app} from {from_version} to {version}"
        key = self._key(*place, MANIFEST)
        text = await self.s3.call(doing, self._read, key)
        if text is None:
            return None
        where = f"s3://{self.bucket}/{key}"
        return package_from_manifest(text, where, lambda name: self._key(*place, name))

    # -- writing -----------------------------------------------------------------------------

    async def put(
        self, tarball: Path, artifact: Artifact, extra: dict[str, Any] | None = None
    ) -> Artifact:
        """Upload the tarball, then its manifest (create-only); a version is immutable."""
        doing = f"storing {artifact.app} {stored_as(artifact)}"
        return await self.s3.call(doing, self._put, tarball, artifact, extra)

    async def remove(self, app: str, version: str) -> None:
        """Delete the version with its upgrade packages, the version's manifest first, so a
        half-removed version is never listed, and each package's before its tarball."""
        doing = f"removing {app} {version}"
        keys = await self.s3.call(doing, self._list, self._key(app, version) + "/")
        manifest = self._key(app, version, MANIFEST)
        first = sorted(keys, key=lambda k: (k != manifest, not k.endswith("/" + MANIFEST), k))
        for key in first:
            await self.s3.call(doing, self.s3.client().delete_object, Bucket=self.bucket, Key=key)

    # -- getting the bytes to a node ---------------------------------------------------------

    async def local_file(self, artifact: Artifact) -> Path:
        """A verified copy in the local cache, downloaded once however many nodes ask."""
        return await self.cache.get(artifact, self.url, partial(self._download, artifact))

    async def fetch_command(self, artifact: Artifact) -> str:
        """A node-side sh command printing the object: curl of a short-lived presigned URL."""
        url = await self._presigned("get_object", artifact.location)
        return _curl(url, self.url)

    # -- a build host putting its release straight in ----------------------------------------

    async def upload_command(self, app: str, version: str, path: str) -> tuple[str, str]:
        """Where a build host puts its tarball and the sh command (a presigned PUT of the file
        at `path`) that does it; refused when the version is already stored."""
        if version in await self.versions(app):
            stored = (await self.artifact(app, version)).sha256
            refuse_another_build(app, version, self.url, stored, new="")
        key = self._key(app, version, f"{app}-{version}.tar.gz")
        url = await self._presigned("put_object", key)
        return key, _curl(url, self.url, "-o", "/dev/null", "-T", path)

    async def record(self, stored: Artifact, extra: dict[str, Any] | None = None) -> Artifact:
        """Write the manifest of a tarball a build host put in, once S3 shows it whole."""
        doing = f"storing {stored.app} {stored.version}"
        head = await self.s3.call(
            doing, self.s3.client().head_object, Bucket=self.bucket, Key=stored.location
        )
        if head["ContentLength"] != stored.size:
            raise UsageError(
                f"store {self.url}: {stored.location} has {head['ContentLength']} bytes, the "
                f"build host sent {stored.size}; no manifest written, the version is not listed"
            )
        await self.s3.call(doing, self._write_manifest, stored, extra)
        return stored

    async def _presigned(self, operation: str, key: str) -> str:
        return str(
            await self.s3.call(
                f"signing a URL for {key}",
                self.s3.client().generate_presigned_url,
                operation,
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=self.url_expiry,
            )
        )

    # -- boto3 -------------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _list(self, prefix: str) -> list[str]:
        pages = (
            self.s3.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return [item["Key"] for page in pages for item in page.get("Contents", ())]

    def _read(self, key: str) -> str | None:
        try:
            body = self.s3.client().get_object(Bucket=self.bucket, Key=key)["Body"]
        except botocore.exceptions.ClientError as error:
            if error_code(error) in ("NoSuchKey", "404"):
                return None
            raise
        return str(body.read().decode())

    def _put(self, tarball: Path, artifact: Artifact, extra: dict[str, Any] | None) -> Artifact:
        stored = replace(
            artifact,
            sha256=sha256_of(tarball),
            size=tarball.stat().st_size,
            location=self._key(*place_of(artifact), artifact.name),
        )
        existing = self._read(self._key(*place_of(stored), MANIFEST))
        if existing is not None:
            was = json.loads(existing)["sha256"]
            refuse_another_build(stored.app, stored_as(stored), self.url, was, stored.sha256)
            return stored
        self.s3.client().upload_file(
            str(tarball),
            self.bucket,
            stored.location,
            ExtraArgs={"Metadata": {"sha256": stored.sha256}},
        )
        self._write_manifest(stored, extra)
        return stored

    def _write_manifest(self, stored: Artifact, extra: dict[str, Any] | None) -> None:
        self.s3.client().put_object(
            Bucket=self.bucket,
            Key=self._key(*place_of(stored), MANIFEST),
            Body=manifest_text(stored, extra or {}).encode(),
            ContentType="application/json",
            IfNoneMatch="*",  # create-only: two builders racing for one version, one wins
        )

    async def _download(self, artifact: Artifact, target: Path) -> None:
        download = self.s3.client().download_file
        await self.s3.call(
            f"downloading {artifact.name}", download, self.bucket, artifact.location, str(target)
        )


def _curl(url: str, store: str, *options: str) -> str:
    """curl of a presigned URL read from a here-document, so no process list shows it."""
    if any(c in url for c in '"\\\n'):
        raise UsageError(f"store {store}: unexpected characters in a presigned URL")
    arguments = " ".join(shlex.quote(o) for o in ("-fsS", "--retry", "3", *options))
    return f"curl {arguments} --config - <<'EDELIVER_CURL'\nurl = \"{url}\"\nEDELIVER_CURL"
