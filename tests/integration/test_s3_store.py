"""S3ReleaseStore against moto's S3 server over HTTP: its layout and its errors (the rest of what
every store does is tests/contract/test_release_store_contract.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edeliver.adapters.store.local_store import StoreUnreachable
from edeliver.adapters.store.s3_store import S3ReleaseStore
from edeliver.cli.main import Runtime, app
from edeliver.core.domain.errors import NodeError, UsageError
from edeliver.core.domain.model import Artifact, Platform
from tests.support.moto import CREDENTIALS, free_port, moto_server, s3_client

BUCKET = "releases"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        s3_client(url).create_bucket(Bucket=BUCKET)
        yield url


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def store_at(
    endpoint: str, tmp_path: Path, bucket: str = BUCKET, prefix: str = ""
) -> S3ReleaseStore:
    prefix = prefix or tmp_path.name  # one prefix per test: the module shares one server
    return S3ReleaseStore(bucket, prefix, tmp_path / "cache", endpoint_url=endpoint)


def tarball(directory: Path, content: bytes) -> Path:
    path = directory / f"t-{len(content)}.tar.gz"
    path.write_bytes(content)
    return path


def test_a_put_version_is_listed_in_version_order_with_its_full_manifest(
    endpoint: str, tmp_path: Path
) -> None:
    """The manifest carries kind, sha256, size, provenance and platform; the tarball beside it."""
    store = store_at(endpoint, tmp_path)
    platform = Platform("linux", "x86_64", "glibc", "2.36")
    for version in ("0.10.0", "0.9.0"):
        built = Artifact(
            "hello", version, "", 0, platform=platform, git_revision="abc123", otp="25"
        )
        asyncio.run(
            store.put(tarball(tmp_path, version.encode()), built, {"built_by": "ci@runner"})
        )
    assert asyncio.run(store.versions("hello")) == ["0.9.0", "0.10.0"]
    found = asyncio.run(store.artifact("hello", "0.10.0"))
    assert (found.size, found.platform, found.git_revision, found.otp) == (
        6,
        platform,
        "abc123",
        "25",
    )
    key = f"{tmp_path.name}/hello/0.10.0/manifest.json"
    manifest = json.loads(s3_client(endpoint).get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert manifest["sha256"] == found.sha256 and manifest["built_by"] == "ci@runner"
    assert manifest["kind"] == "release" and manifest["from_versions"] == []


def test_a_removed_version_is_no_longer_listed_nor_stored(endpoint: str, tmp_path: Path) -> None:
    store = store_at(endpoint, tmp_path)
    for version in ("0.1.0", "0.2.0"):
        asyncio.run(
            store.put(tarball(tmp_path, version.encode()), Artifact("hello", version, "", 0))
        )
    asyncio.run(store.remove("hello", "0.1.0"))
    assert asyncio.run(store.versions("hello")) == ["0.2.0"]
    left = s3_client(endpoint).list_objects_v2(
        Bucket=BUCKET, Prefix=f"{tmp_path.name}/hello/0.1.0/"
    )
    assert left.get("KeyCount") == 0


def test_a_corrupted_object_is_refused_when_downloaded(endpoint: str, tmp_path: Path) -> None:
    """Neither S3 nor moto re-checks our sha256: the store does, against its manifest."""
    store = store_at(endpoint, tmp_path)
    stored = asyncio.run(
        store.put(tarball(tmp_path, b"release bytes"), Artifact("hello", "0.1.0", "", 0))
    )
    s3_client(endpoint).put_object(Bucket=BUCKET, Key=stored.location, Body=b"tampered bytes")
    with pytest.raises(NodeError, match=r"corrupted in the store.*refused before any node"):
        asyncio.run(store.local_file(stored))
    assert not list((tmp_path / "cache").rglob("*.tar.gz"))


def upgrade_package(to: str, from_version: str) -> Artifact:
    return Artifact("hello", to, "", 0, kind="upgrade", from_versions=(from_version,))


def test_an_upgrade_package_is_kept_below_its_version_manifest_written_and_listed_last(
    endpoint: str, tmp_path: Path
) -> None:
    store = store_at(endpoint, tmp_path)
    asyncio.run(store.put(tarball(tmp_path, b"0.2.0"), Artifact("hello", "0.2.0", "", 0)))
    stored = asyncio.run(store.put(tarball(tmp_path, b"relup"), upgrade_package("0.2.0", "0.1.0")))
    below = f"{tmp_path.name}/hello/0.2.0/upgrades/0.1.0/"
    assert stored.location == below + "hello-0.2.0.tar.gz"
    keys = s3_client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=below)["Contents"]
    assert sorted(k["Key"] for k in keys) == [below + "hello-0.2.0.tar.gz", below + "manifest.json"]
    manifest = json.loads(
        s3_client(endpoint).get_object(Bucket=BUCKET, Key=below + "manifest.json")["Body"].read()
    )
    assert (manifest["kind"], manifest["from_versions"]) == ("upgrade", ["0.1.0"])
    # A package whose manifest is not written yet (an upload cut short) is not found.
    s3_client(endpoint).delete_object(Bucket=BUCKET, Key=below + "manifest.json")
    assert asyncio.run(store.upgrade("hello", "0.1.0", "0.2.0")) is None


def test_a_corrupted_upgrade_package_is_refused_when_downloaded(
    endpoint: str, tmp_path: Path
) -> None:
    store = store_at(endpoint, tmp_path)
    asyncio.run(store.put(tarball(tmp_path, b"relup bytes"), upgrade_package("0.2.0", "0.1.0")))
    package = asyncio.run(store.upgrade("hello", "0.1.0", "0.2.0"))
    assert package is not None
    s3_client(endpoint).put_object(Bucket=BUCKET, Key=package.location, Body=b"tampered")
    with pytest.raises(NodeError, match=r"hello-0\.2\.0\.tar\.gz is corrupted in the store"):
        asyncio.run(store.local_file(package))
    assert not list((tmp_path / "cache").rglob("*.tar.gz"))


def test_a_missing_bucket_is_named(endpoint: str, tmp_path: Path) -> None:
    store = store_at(endpoint, tmp_path, bucket="no-such-bucket")
    with pytest.raises(UsageError, match="bucket 'no-such-bucket' does not exist"):
        asyncio.run(store.versions("hello"))


def test_refused_credentials_are_reported_without_the_secret(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """moto checking IAM knows no key: the error says so and never echoes the secret."""
    with moto_server(check_credentials=True) as strict:
        store = store_at(strict, tmp_path)
        with pytest.raises(
            UsageError, match=r"credentials were refused \(InvalidAccessKeyId\)"
        ) as caught:
            asyncio.run(store.versions("hello"))
    said = str(caught.value) + "".join(capfd.readouterr())
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in said
    assert CREDENTIALS["AWS_ACCESS_KEY_ID"] not in said


def test_an_unreachable_endpoint_is_one_clear_error(tmp_path: Path) -> None:
    store = store_at(f"http://127.0.0.1:{free_port()}", tmp_path)
    with pytest.raises(StoreUnreachable, match=r"cannot reach http://127\.0\.0\.1:\d+"):
        asyncio.run(store.versions("hello"))


def test_a_presigned_fetch_command_keeps_the_url_out_of_argv(endpoint: str, tmp_path: Path) -> None:
    """The node reads the URL from a here-document: no process list shows the signature."""
    store = store_at(endpoint, tmp_path)
    stored = asyncio.run(store.put(tarball(tmp_path, b"x"), Artifact("hello", "0.1.0", "", 0)))
    command = asyncio.run(store.fetch_command(stored))
    first_line, _, rest = command.partition("\n")
    assert "X-Amz-Signature" not in first_line and "X-Amz-Signature" in rest
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in rest  # SigV4: S3 refuses SigV2 URLs
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in command


def test_the_cli_reports_a_missing_bucket_and_refused_credentials_in_one_line_exit_2(
    endpoint: str, tmp_path: Path
) -> None:
    """`edeliver releases` through the real composition: the bucket named, no secret shown."""
    (tmp_path / ".deliver").mkdir()
    config = tmp_path / ".deliver/edeliver.toml"
    runner = CliRunner()
    with moto_server(check_credentials=True) as strict:
        for url, bucket, said in (
            (endpoint, "no-such-bucket", "bucket 'no-such-bucket' does not exist"),
            (strict, BUCKET, "the credentials were refused (InvalidAccessKeyId)"),
        ):
            config.write_text(
                f'app = "hello"\n[store]\nurl = "s3://{bucket}/hello"\nendpoint_url = "{url}"\n'
            )
            result = runner.invoke(app, ["releases"], obj=Runtime(project=tmp_path))
            assert result.exit_code == 2, result.output
            assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1
            assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in result.output + result.stderr


def test_a_manifest_with_a_null_size_is_refused_naming_its_key(
    endpoint: str, tmp_path: Path
) -> None:
    """`"size": null` in S3: one UsageError (exit 2) naming s3://bucket/key and the field."""
    store = store_at(endpoint, tmp_path)
    asyncio.run(store.put(tarball(tmp_path, b"release bytes"), Artifact("hello", "0.2.0", "", 0)))
    key = f"{tmp_path.name}/hello/0.2.0/manifest.json"
    client = s3_client(endpoint)
    manifest = json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    client.put_object(Bucket=BUCKET, Key=key, Body=json.dumps({**manifest, "size": None}))
    with pytest.raises(UsageError) as refused:
        asyncio.run(store.artifact("hello", "0.2.0"))
    assert str(refused.value) == (
        f"s3://{BUCKET}/{key}: size: expected a non-negative integer, got null"
    )
    assert refused.value.exit_code == 2
