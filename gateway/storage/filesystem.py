"""Local-folder object store: atomic writes (temp file, fsync, rename, fsync of the folder and new parents).

`create` writes a new object straight under its key with one fdatasync. On Linux's ext4, XFS and
btrfs, fsync of a newly created file also makes its directory entry durable (ext4 commits the
journal transaction that holds the entry, or syncs the parent when it has no journal; XFS forces
its log past the create; btrfs logs new names), so one device flush replaces the two of put().
The price is that a crash during the write can leave a torn file under the key: only sealed data
(gateway/dicom/seal.py) is given to `create`, and a folder made for it is still synced explicitly.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gateway.errors import NotFound, StorageUnavailable
from gateway.storage.base import ObjectInfo

_TMP_SUFFIX = ".tmp-"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_key(key: str) -> None:
    # Keys come from validated UIDs, but the backend refuses anything that could leave its root.
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in key.split("/")):
        raise ValueError(f"invalid object key {key!r}")


class FilesystemStore:
    """Objects as files under `root`, one file per key."""

    create_may_tear = True

    def __init__(self, root: Path, sync: bool = True) -> None:
        self.root = root
        self._root = os.fspath(root)  # keys map to plain string paths: pathlib was ~8% of the SCP's CPU
        # sync=False skips fdatasync/fsync (like Orthanc's SyncStorageArea=false): ~4 ms less per
        # instance, but an instance acknowledged just before a power loss may be lost.
        self.sync = sync

    def _file(self, key: str) -> str:
        check_key(key)
        return f"{self._root}/{key}"

    def _open_new(self, path: str, flags: int, new_folders: list[str]) -> int:
        """Open `path` with `flags`, making its missing folders (listed in `new_folders`) on the way."""
        try:
            return os.open(path, flags, 0o666)
        except FileNotFoundError:  # the first object of its series: create the folders
            parent = os.path.dirname(path)
            folder = parent
            while len(folder) > len(self._root) and not os.path.isdir(folder):
                new_folders.append(folder)
                folder = os.path.dirname(folder)
            os.makedirs(parent, exist_ok=True)
            return os.open(path, flags, 0o666)

    def _sync_new_folders(self, new_folders: list[str]) -> None:
        # A folder made here is an entry of its parent: that parent is synced too.
        for folder in new_folders:
            _fsync_folder(os.path.dirname(folder))

    def create(self, key: str, data: bytes) -> bool:
        path = self._file(key)
        new_folders: list[str] = []
        try:
            fd = self._open_new(path, _CREATE_NEW, new_folders)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {key}: {exc.strerror or exc}") from exc
        try:
            try:
                _write_all(fd, data)
                if self.sync:
                    os.fdatasync(fd)  # also makes the new entry durable (see the module's docstring)
            finally:
                os.close(fd)
            if self.sync:
                self._sync_new_folders(new_folders)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(path)  # ours: O_EXCL made it
            raise StorageUnavailable(f"cannot write {key}: {exc.strerror or exc}") from exc
        return True

    def put(self, key: str, data: bytes | BinaryIO, length: int | None = None) -> None:
        path = self._file(key)
        # One thread of one process writes a temp file at a time, so pid and thread name it uniquely (a
        # crashed writer's leftover is truncated). File descriptors, not open(): the SCP calls this for
        # every instance, and open()'s fstat/ioctl/lseek and uuid4's getrandom each cost a syscall and
        # a round trip of the interpreter lock among the association threads.
        tmp = f"{path}{_TMP_SUFFIX}{os.getpid()}-{threading.get_ident()}"
        new_folders: list[str] = []
        try:
            fd = self._open_new(tmp, _CREATE, new_folders)
            try:
                if isinstance(data, bytes | bytearray | memoryview):
                    _write_all(fd, data)
                else:
                    while chunk := data.read(1 << 20):
                        _write_all(fd, chunk)
                if self.sync:
                    os.fdatasync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            if self.sync:
                _fsync_folder(os.path.dirname(path))
                self._sync_new_folders(new_folders)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StorageUnavailable(f"cannot write {key}: {exc.strerror or exc}") from exc

    def open(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        path = self._file(key)
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            raise NotFound(key) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc.strerror or exc}") from exc
        return self._chunks(handle, chunk_size)

    @staticmethod
    def _chunks(handle: BinaryIO, chunk_size: int) -> Iterator[bytes]:
        with handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def read(self, key: str) -> bytes:
        try:
            with open(self._file(key), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise NotFound(key) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc.strerror or exc}") from exc

    def read_range(self, key: str, start: int, end: int) -> bytes:
        if start < 0 or end < start:
            raise ValueError(f"invalid range [{start}, {end})")
        try:
            with open(self._file(key), "rb") as handle:
                handle.seek(start)
                return handle.read(end - start)
        except FileNotFoundError:
            raise NotFound(key) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc.strerror or exc}") from exc

    def head(self, key: str) -> ObjectInfo | None:
        try:
            return ObjectInfo(key=key, size=os.stat(self._file(key)).st_size)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageUnavailable(f"cannot stat {key}: {exc.strerror or exc}") from exc

    def delete(self, key: str) -> None:
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file(key))
        except OSError as exc:
            raise StorageUnavailable(f"cannot delete {key}: {exc.strerror or exc}") from exc

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        if not self.root.is_dir():
            return
        keys: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(self.root):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if _TMP_SUFFIX in name:
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        yield from sorted(keys)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise StorageUnavailable(f"object store folder {self.root} is not writable")
        except OSError as exc:
            raise StorageUnavailable(f"object store folder {self.root}: {exc.strerror or exc}") from exc
