"""Build an ObjectStore from a storage URL (`file:///path` or `s3://bucket?endpoint=host:port&secure=false`)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from gateway.errors import ConfigError
from gateway.storage.base import ObjectStore
from gateway.storage.filesystem import FilesystemStore


def store_from_url(
    url: str, access_key: str | None = None, secret_key: str | None = None, sync: bool = True
) -> ObjectStore:
    """Return the backend the URL names; raise ConfigError for a URL that names none.

    `sync` applies to the local folder (fsync before success); S3 acknowledges durable writes itself.
    """
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FilesystemStore(Path(unquote(parsed.path)), sync=sync)
    if parsed.scheme == "s3":
        from gateway.storage.s3 import S3Store

        query = parse_qs(parsed.query)
        endpoint = query.get("endpoint", ["s3.amazonaws.com"])[0]
        secure = query.get("secure", ["true"])[0].lower() not in ("false", "0", "no")
        region = query.get("region", [None])[0]
        bucket = parsed.netloc
        if len(bucket) < 3:
            raise ConfigError(f"invalid setting GATEWAY_STORAGE_URL: bucket name {bucket!r} is too short")
        return S3Store(
            endpoint=endpoint,
            bucket=bucket,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
        )
    raise ConfigError(f"invalid setting GATEWAY_STORAGE_URL: unsupported scheme {parsed.scheme!r}")
