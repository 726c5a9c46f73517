"""S3-compatible object store (AWS S3, MinIO, SeaweedFS) through the `minio` SDK.

Single PUTs and multipart uploads are atomic in S3: a reader sees the old object, the whole new one,
or none, so no temp-key dance is needed. Large file-like bodies are streamed as a multipart upload.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from io import BytesIO
from typing import BinaryIO

import urllib3
from minio import Minio
from minio.error import S3Error
from urllib3.exceptions import HTTPError

from gateway.errors import NotFound, StorageUnavailable
from gateway.storage.base import ObjectInfo
from gateway.storage.filesystem import check_key

_PART_SIZE = 16 << 20
_MISSING = frozenset({"NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"})
_NO_BUCKET = frozenset({"NoSuchBucket"})


class S3Store:
    """Objects in one bucket; the bucket is created on first use when absent."""

    create_may_tear = False

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        secure: bool = True,
        region: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        # Short connect timeout and few retries: a store outage must surface as 0xA700 quickly,
        # not after the modality's DIMSE timeout; Celery retries the worker side with backoff.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout, 3.0), read=timeout),
            maxsize=32,
            retries=urllib3.Retry(total=2, backoff_factor=0.1, status_forcelist=(500, 502, 503, 504)),
        )
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return
            try:
                if not self._client.bucket_exists(self.bucket):
                    try:
                        self._client.make_bucket(self.bucket)
                    except S3Error as exc:
                        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                            raise
            except (S3Error, HTTPError, OSError, ValueError) as exc:
                raise StorageUnavailable(f"S3 bucket {self.bucket} at {self.endpoint}: {_describe(exc)}") from exc
            self._bucket_ready = True

    def _fail(self, action: str, key: str, exc: Exception) -> StorageUnavailable | NotFound:
        if isinstance(exc, S3Error) and exc.code in _MISSING:
            return NotFound(key)
        if isinstance(exc, S3Error) and exc.code in _NO_BUCKET:
            self._bucket_ready = False
            return NotFound(key)
        return StorageUnavailable(f"cannot {action} {key} at {self.endpoint}: {_describe(exc)}")

    def put(self, key: str, data: bytes | BinaryIO, length: int | None = None) -> None:
        check_key(key)
        self._ensure_bucket()
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                body = bytes(data)
                self._client.put_object(self.bucket, key, BytesIO(body), len(body), "application/dicom")
            elif length is not None and length < _PART_SIZE:
                self._client.put_object(self.bucket, key, data, length, "application/dicom")
            else:
                # Unknown or large length: stream as multipart without buffering the whole body.
                self._client.put_object(self.bucket, key, data, -1, "application/dicom", part_size=_PART_SIZE)
        except (S3Error, HTTPError, OSError, ValueError) as exc:
            raise StorageUnavailable(f"cannot write {key} at {self.endpoint}: {_describe(exc)}") from exc

    def create(self, key: str, data: bytes) -> bool:
        # An S3 PUT is atomic by itself: readers see the whole object or none, a crash leaves nothing.
        if self.head(key) is not None:
            return False
        self.put(key, data)
        return True

    def open(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        check_key(key)
        try:
            response = self._client.get_object(self.bucket, key)
        except (S3Error, HTTPError, OSError) as exc:
            raise self._fail("read", key, exc) from exc
        return self._chunks(key, response, chunk_size)

    def _chunks(self, key: str, response: urllib3.BaseHTTPResponse, chunk_size: int) -> Iterator[bytes]:
        try:
            yield from response.stream(chunk_size)
        except (HTTPError, OSError) as exc:
            raise StorageUnavailable(f"cannot read {key} at {self.endpoint}: {_describe(exc)}") from exc
        finally:
            response.close()
            response.release_conn()

    def read(self, key: str) -> bytes:
        return b"".join(self.open(key))

    def read_range(self, key: str, start: int, end: int) -> bytes:
        if start < 0 or end < start:
            raise ValueError(f"invalid range [{start}, {end})")
        check_key(key)
        if end == start:
            if self.head(key) is None:
                raise NotFound(key)
            return b""
        try:
            response = self._client.get_object(self.bucket, key, offset=start, length=end - start)
        except S3Error as exc:
            if exc.code == "InvalidRange":
                # Asking past the end of an existing object returns nothing, as a file read would.
                if self.head(key) is None:
                    raise NotFound(key) from exc
                return b""
            raise self._fail("read", key, exc) from exc
        except (HTTPError, OSError) as exc:
            raise self._fail("read", key, exc) from exc
        try:
            return bytes(response.read())
        except (HTTPError, OSError) as exc:
            raise StorageUnavailable(f"cannot read {key} at {self.endpoint}: {_describe(exc)}") from exc
        finally:
            response.close()
            response.release_conn()

    def head(self, key: str) -> ObjectInfo | None:
        check_key(key)
        try:
            stat = self._client.stat_object(self.bucket, key)
        except (S3Error, HTTPError, OSError) as exc:
            error = self._fail("stat", key, exc)
            if isinstance(error, NotFound):
                return None
            raise error from exc
        return ObjectInfo(key=key, size=int(stat.size or 0))

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            self._client.remove_object(self.bucket, key)
        except (S3Error, HTTPError, OSError) as exc:
            error = self._fail("delete", key, exc)
            if isinstance(error, NotFound):
                return
            raise error from exc

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        try:
            if not self._client.bucket_exists(self.bucket):
                return
            # S3 lists keys in UTF-8 binary order, which equals Python's order for our ASCII keys.
            for obj in self._client.list_objects(self.bucket, prefix=prefix or None, recursive=True):
                if obj.object_name is not None:
                    yield obj.object_name
        except (S3Error, HTTPError, OSError) as exc:
            raise StorageUnavailable(f"cannot list {prefix!r} at {self.endpoint}: {_describe(exc)}") from exc

    def check(self) -> None:
        self._bucket_ready = False
        self._ensure_bucket()


def _describe(exc: Exception) -> str:
    if isinstance(exc, S3Error):
        return f"{exc.code}: {exc.message}"
    return str(exc) or type(exc).__name__
