"""In-memory fakes for unit tests: an object store and task queues that record or fail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from gateway.errors import NotFound, QueueUnavailable, StorageUnavailable
from gateway.storage.base import ObjectInfo


class MemoryStore:
    """ObjectStore kept in a dict; `fail_writes` simulates an outage."""

    create_may_tear = False

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail_writes = False
        self.puts = 0
        self.creates = 0

    def put(self, key: str, data: bytes | BinaryIO, length: int | None = None) -> None:
        if self.fail_writes:
            raise StorageUnavailable("memory store is down")
        self.puts += 1
        self.objects[key] = data if isinstance(data, bytes) else data.read()

    def create(self, key: str, data: bytes) -> bool:
        if self.fail_writes:
            raise StorageUnavailable("memory store is down")
        if key in self.objects:
            return False
        self.creates += 1
        self.objects[key] = data
        return True

    def open(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        data = self.read(key)
        return iter([data[i : i + chunk_size] for i in range(0, len(data), chunk_size)])

    def read(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise NotFound(key) from None

    def read_range(self, key: str, start: int, end: int) -> bytes:
        return self.read(key)[start:end]

    def head(self, key: str) -> ObjectInfo | None:
        return ObjectInfo(key, len(self.objects[key])) if key in self.objects else None

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        yield from sorted(k for k in self.objects if k.startswith(prefix))

    def check(self) -> None:
        if self.fail_writes:
            raise StorageUnavailable("memory store is down")


class RecordingQueue:
    """TaskQueue that records the keys it was asked to index; `down` simulates a broker outage."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.down = False

    def enqueue_index(self, key: str) -> None:
        if self.down:
            raise QueueUnavailable("broker is down")
        self.keys.append(key)

    def check(self) -> None:
        if self.down:
            raise QueueUnavailable("broker is down")
