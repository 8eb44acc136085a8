"""boto3 as the S3 store calls it: one client per store, configured once, each call on a worker
thread (boto3 is synchronous), and the one place where boto3's errors become ours.

An error says what the store was doing and, for a refusal, S3's error code: never the request's
details, so no secret or signature is ever shown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from edeliver.adapters.store.local_store import StoreUnreachable
from edeliver.core.domain.errors import EdeliverError, UsageError

T = TypeVar("T")

_UNREACHABLE = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
)
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "InvalidClientTokenId",
    "403",
}


class S3Calls:
    """The boto3 client of the store at `url` (`s3://bucket/prefix`, naming it in errors),
    built on first use; credentials from boto3's own chain, never from the config."""

    def __init__(
        self,
        url: str,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        checksums: str = "when_supported",
    ) -> None:
        self.url, self.bucket = url, bucket
        self.endpoint_url, self.region, self.profile = endpoint_url, region, profile
        self.checksums = checksums
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
            config = botocore.config.Config(
                signature_version="s3v4",  # presigned URLs default to SigV2, which S3 retired
                request_checksum_calculation=self.checksums,
                response_checksum_validation=self.checksums,
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            )
            self._client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
        return self._client

    async def call(self, doing: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)` on a worker thread, boto3's errors raised as ours."""
        return await asyncio.to_thread(self._mapped, doing, function, *args, **kwargs)

    def _mapped(self, doing: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise self._error(error, doing) from None

    def _error(self, error: Exception, doing: str) -> EdeliverError:
        where = f"store {self.url}: {doing}"
        if isinstance(error, botocore.exceptions.ClientError):
            return self._refusal(error_code(error), where)
        if isinstance(error, botocore.exceptions.ProfileNotFound):
            return UsageError(f"{where}: AWS profile {self.profile!r} is not configured")
        if isinstance(error, botocore.exceptions.NoCredentialsError):
            return UsageError(f"{where}: no AWS credentials (set AWS_PROFILE or AWS_* variables)")
        if isinstance(error, _UNREACHABLE):
            return StoreUnreachable(f"{where}: cannot reach {self.endpoint_url or 'AWS S3'}")
        return EdeliverError(f"{where}: {type(error).__name__}")

    def _refusal(self, code: str, where: str) -> EdeliverError:
        if code == "NoSuchBucket":
            return UsageError(f"{where}: bucket {self.bucket!r} does not exist")
        if code in _CREDENTIAL_CODES:
            return UsageError(
                f"{where}: the credentials were refused ({code}); check AWS_PROFILE or "
                "the AWS_* environment variables"
            )
        return EdeliverError(f"{where}: S3 said {code}")


def error_code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "unknown"))
