"""One behaviour suite for every ObjectStore backend: local folder and S3 (a real SeaweedFS server)."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import NotFound, StorageUnavailable
from gateway.storage.base import ObjectStore
from gateway.storage.factory import store_from_url
from gateway.storage.filesystem import FilesystemStore
from gateway.storage.s3 import S3Store
from tests.fixtures.s3 import S3Server

KEY = "1.2.3/1.2.3.4/1.2.3.4.5.dcm"


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "filesystem":
        return FilesystemStore(tmp_path / "objects")
    s3: S3Store = request.getfixturevalue("s3_store")
    return s3


def test_put_then_read_returns_the_same_bytes(store: ObjectStore) -> None:
    data = os.urandom(70_000)
    store.put(KEY, data)
    assert store.read(KEY) == data
    assert b"".join(store.open(KEY, chunk_size=4096)) == data
    info = store.head(KEY)
    assert info is not None and info.size == len(data) and info.key == KEY


def test_open_yields_chunks_no_larger_than_asked(store: ObjectStore) -> None:
    store.put(KEY, b"x" * 10_000)
    chunks = list(store.open(KEY, chunk_size=3000))
    assert all(len(c) <= 3000 for c in chunks)
    assert sum(map(len, chunks)) == 10_000


def test_put_replaces_an_existing_object(store: ObjectStore) -> None:
    store.put(KEY, b"first version")
    store.put(KEY, b"second")
    assert store.read(KEY) == b"second"


def test_put_streams_a_file_like_object_of_unknown_length(store: ObjectStore) -> None:
    # Larger than one multipart part of the S3 backend, so S3 does a real multipart upload.
    data = os.urandom(17 << 20)
    store.put(KEY, io.BytesIO(data))
    assert store.read_range(KEY, 0, 16) == data[:16]
    assert store.read_range(KEY, len(data) - 16, len(data)) == data[-16:]
    info = store.head(KEY)
    assert info is not None and info.size == len(data)


def test_put_file_like_with_known_length(store: ObjectStore) -> None:
    store.put(KEY, io.BytesIO(b"abcdef"), length=6)
    assert store.read(KEY) == b"abcdef"


def test_range_reads(store: ObjectStore) -> None:
    store.put(KEY, bytes(range(256)))
    assert store.read_range(KEY, 10, 20) == bytes(range(10, 20))
    assert store.read_range(KEY, 250, 300) == bytes(range(250, 256))
    assert store.read_range(KEY, 256, 300) == b""
    assert store.read_range(KEY, 5, 5) == b""
    with pytest.raises(ValueError):
        store.read_range(KEY, 20, 10)


def test_missing_objects(store: ObjectStore) -> None:
    assert store.head(KEY) is None
    with pytest.raises(NotFound):
        store.read(KEY)
    with pytest.raises(NotFound):
        list(store.open(KEY))
    with pytest.raises(NotFound):
        store.read_range(KEY, 0, 10)
    store.delete(KEY)  # deleting a missing object is not an error


def test_delete_removes_the_object(store: ObjectStore) -> None:
    store.put(KEY, b"data")
    store.delete(KEY)
    assert store.head(KEY) is None
    assert list(store.iter_keys()) == []


def test_iter_keys_lists_sorted_keys_under_a_prefix(store: ObjectStore) -> None:
    keys = ["1.2/1.3/1.9.dcm", "1.2/1.3/1.10.dcm", "1.2/1.4/1.5.dcm", "1.7/1.8/1.9.dcm"]
    for key in keys:
        store.put(key, key.encode())
    assert list(store.iter_keys()) == sorted(keys)
    assert list(store.iter_keys("1.2/")) == sorted(keys[:3])
    assert list(store.iter_keys("1.2/1.4/")) == ["1.2/1.4/1.5.dcm"]
    assert list(store.iter_keys("9")) == []


@pytest.mark.parametrize("key", ["../escape.dcm", "/abs.dcm", "a/../../b.dcm", "", "a//b.dcm", "a\\b.dcm"])
def test_keys_that_could_escape_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError):
        store.put(key, b"x")


def test_concurrent_writers_of_one_key_leave_one_whole_object(store: ObjectStore) -> None:
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    threads = [threading.Thread(target=store.put, args=(KEY, p)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.read(KEY) in payloads
    assert list(store.iter_keys()) == [KEY]


def test_create_writes_a_free_key_and_leaves_a_taken_one_alone(store: ObjectStore) -> None:
    assert store.create(KEY, b"first" * 1000) is True
    assert store.read(KEY) == b"first" * 1000
    assert store.create(KEY, b"second") is False
    assert store.read(KEY) == b"first" * 1000
    assert list(store.iter_keys()) == [KEY]


def test_create_makes_the_folders_of_a_new_series(store: ObjectStore) -> None:
    assert store.create("s1/r1/a.dcm", b"a") and store.create("s1/r1/b.dcm", b"b")
    assert store.create("s1/r2/c.dcm", b"c")
    assert list(store.iter_keys("s1/")) == ["s1/r1/a.dcm", "s1/r1/b.dcm", "s1/r2/c.dcm"]
    assert store.read("s1/r2/c.dcm") == b"c"


def test_concurrent_creators_of_one_key_leave_one_whole_object(store: ObjectStore) -> None:
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    won: list[bytes] = []

    def create(payload: bytes) -> None:
        if store.create(KEY, payload):
            won.append(payload)

    threads = [threading.Thread(target=create, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) >= 1 and store.read(KEY) in won
    if isinstance(store, FilesystemStore):
        assert len(won) == 1  # O_EXCL: exactly one creator wins (S3 has no conditional put here)


def test_check_passes_on_a_reachable_store(store: ObjectStore) -> None:
    store.check()


def test_filesystem_store_leaves_no_temp_file_after_a_failed_write(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)

    class Exploding(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError(5, "Input/output error")
            return b"x" * 1000

    with pytest.raises(StorageUnavailable):
        store.put(KEY, Exploding())
    assert store.head(KEY) is None
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def failing_fdatasync(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("gateway.storage.filesystem.os.fdatasync", fail)


@pytest.mark.parametrize("write", ["put", "create"])
def test_filesystem_store_leaves_nothing_under_a_new_key_when_its_sync_fails(
    write: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemStore(tmp_path)
    failing_fdatasync(monkeypatch)
    with pytest.raises(StorageUnavailable, match="Input/output error"):
        getattr(store, write)(KEY, b"new" * 1000)
    assert store.head(KEY) is None
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_filesystem_store_keeps_the_existing_object_when_a_replacement_fails_to_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemStore(tmp_path)
    store.put(KEY, b"old" * 1000)
    failing_fdatasync(monkeypatch)
    with pytest.raises(StorageUnavailable):
        store.put(KEY, b"new" * 2000)
    assert store.read(KEY) == b"old" * 1000
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [KEY.rsplit("/", 1)[1]]


def test_filesystem_create_writes_in_place_with_one_fdatasync_and_syncs_only_new_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemStore(tmp_path)
    calls: list[tuple[str, str]] = []
    fsync, fdatasync, replace = os.fsync, os.fdatasync, os.replace

    def record(name: str, call: Callable[[int], None]) -> Callable[[int], None]:
        def recorded(fd: int) -> None:
            calls.append((name, os.readlink(f"/proc/self/fd/{fd}")))
            call(fd)

        return recorded

    def recorded_replace(src: str, dst: str) -> None:
        calls.append(("replace", dst))
        replace(src, dst)

    monkeypatch.setattr("gateway.storage.filesystem.os.fsync", record("fsync", fsync))
    monkeypatch.setattr("gateway.storage.filesystem.os.fdatasync", record("fdatasync", fdatasync))
    monkeypatch.setattr("gateway.storage.filesystem.os.replace", recorded_replace)
    root = str(tmp_path)
    assert store.create("s1/r1/a.dcm", b"x")  # makes s1 and s1/r1: their parents are synced
    assert store.create("s1/r1/b.dcm", b"y")  # one fdatasync of the file itself, nothing else
    assert calls == [
        ("fdatasync", f"{root}/s1/r1/a.dcm"),
        *(("fsync", f"{root}/s1"), ("fsync", root)),
        ("fdatasync", f"{root}/s1/r1/b.dcm"),
    ]


def test_filesystem_store_syncs_the_parents_of_the_folders_it_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemStore(tmp_path)
    synced: list[str] = []
    fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr("gateway.storage.filesystem.os.fsync", record)
    store.put("s1/r1/a.dcm", b"x")  # makes s1 and s1/r1
    store.put("s1/r1/b.dcm", b"y")
    store.put("s1/r2/c.dcm", b"z")  # makes s1/r2 only
    root = str(tmp_path)
    assert synced == [
        *(f"{root}/s1/r1", f"{root}/s1", root),
        f"{root}/s1/r1",
        *(f"{root}/s1/r2", f"{root}/s1"),
    ]


def test_s3_store_outage_is_storage_unavailable() -> None:
    from tests.fixtures.servers import free_port

    store = S3Store(f"127.0.0.1:{free_port()}", "nobucket", "k", "s" * 8, secure=False, timeout=2)
    with pytest.raises(StorageUnavailable):
        store.put(KEY, b"x")
    with pytest.raises(StorageUnavailable):
        store.check()
    with pytest.raises(StorageUnavailable):
        store.head(KEY)


def test_s3_store_with_wrong_credentials_is_storage_unavailable(s3_server: S3Server) -> None:
    store = S3Store(s3_server.endpoint, "somebucket", "wrong", "wrong-secret", secure=False)
    with pytest.raises(StorageUnavailable, match="InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied"):
        store.put(KEY, b"x")


def test_store_from_url_builds_an_s3_store_that_creates_its_bucket(s3_server: S3Server, s3_bucket: str) -> None:
    store = store_from_url(s3_server.storage_url(s3_bucket), s3_server.access_key, s3_server.secret_key)
    assert isinstance(store, S3Store)
    store.put(KEY, b"hello")
    assert s3_server.client().bucket_exists(s3_bucket)
    assert s3_server.client().get_object(s3_bucket, KEY).read() == b"hello"
