"""The ObjectStore protocol: the small surface every storage backend implements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class ObjectInfo:
    """What `head` reports about a stored object."""

    key: str
    size: int


class ObjectStore(Protocol):
    """Durable key -> bytes storage. Backends translate their SDK errors into gateway.errors.

    Ranges follow Orthanc's storage area: `start` inclusive, `end` exclusive.
    Missing keys raise gateway.errors.NotFound; an unreachable backend raises StorageUnavailable.
    """

    # True when a create() cut short by a crash or power loss can leave a torn object under its key
    # (the local folder writes in place); readers that recover from a crash check such objects' seals.
    create_may_tear: bool

    def put(self, key: str, data: bytes | BinaryIO, length: int | None = None) -> None:
        """Store `data` under `key` atomically: readers see the old object, the whole new one, or none."""
        ...

    def create(self, key: str, data: bytes) -> bool:
        """Store `data` under `key` if no object is there, durably, in as few device flushes as the backend can.

        Return False, writing nothing, when `key` already holds an object. Unlike put(), a reader may see
        the object while it is being written, and, when `create_may_tear`, a crash during the call may
        leave it torn: only for data that tells a torn copy from a whole one (gateway/dicom/seal.py).
        """
        ...

    def open(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Yield the object's bytes in chunks of at most `chunk_size`."""
        ...

    def read(self, key: str) -> bytes:
        """Return the whole object."""
        ...

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Return bytes [start, end) of the object (shorter at the end of the object)."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """Return the object's info, or None when there is no such object."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""
        ...

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Yield every key starting with `prefix`, in lexical order."""
        ...

    def check(self) -> None:
        """Raise StorageUnavailable when the backend cannot be reached (used by /readyz)."""
        ...
