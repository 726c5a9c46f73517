"""The bench frees a stopped server's bytes at once but keeps its files (inodes) until the run ends."""

from __future__ import annotations

from pathlib import Path

from bench.servers import _empty_files


def test_stopped_storage_is_emptied_file_by_file_and_kept(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    (storage / "a" / "b").mkdir(parents=True)
    files = [storage / "index.db", storage / "a" / "1.dcm", storage / "a" / "b" / "2.dcm"]
    for n, file in enumerate(files, 1):
        file.write_bytes(b"x" * 1000 * n)
    outside = tmp_path / "outside.dcm"
    outside.write_bytes(b"y" * 500)
    (storage / "link.dcm").symlink_to(outside)

    _empty_files(storage)

    assert [file.stat().st_size for file in files] == [0, 0, 0]
    assert outside.stat().st_size == 500, "a symlink's target outside the storage is left alone"


def test_a_single_file_is_emptied(tmp_path: Path) -> None:
    file = tmp_path / "orthanc.json"
    file.write_text("{}")
    _empty_files(file)
    assert file.exists() and file.stat().st_size == 0
