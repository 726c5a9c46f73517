"""A seekable read-only file over an ObjectStore object, so parsers read headers without fetching whole objects."""

from __future__ import annotations

import io

from gateway.errors import NotFound
from gateway.storage.base import ObjectStore


class RangeReader(io.RawIOBase):
    """Raw, seekable file whose reads become `read_range` calls; wrap it in io.BufferedReader."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        super().__init__()
        info = store.head(key)
        if info is None:
            raise NotFound(key)
        self._store = store
        self._key = key
        self._size = info.size
        self._position = 0

    @property
    def name(self) -> str:
        return self._key

    @property
    def size(self) -> int:
        """The object's size in bytes."""
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._position >= self._size:
            return 0
        end = min(self._size, self._position + len(buffer))
        data = self._store.read_range(self._key, self._position, end)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def open_object(store: ObjectStore, key: str, buffer_size: int = 256 * 1024) -> io.BufferedReader:
    """Return a buffered, seekable reader over the object at `key`; raise NotFound when absent."""
    return io.BufferedReader(RangeReader(store, key), buffer_size=buffer_size)
