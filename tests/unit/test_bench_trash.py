"""The bench's Trash: a stopped server's storage is set aside, deleted at the end or when the disk runs short."""

from __future__ import annotations

from pathlib import Path

from bench.servers import Trash


def _storage(root: Path, name: str) -> Path:
    folder = root / name
    (folder / "series").mkdir(parents=True)
    (folder / "series" / "instance.dcm").write_bytes(b"DICM")
    return folder


def test_put_sets_storage_aside_until_emptied(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash", keep_free=0)
    first, second = _storage(tmp_path, "storage"), _storage(tmp_path, "index")

    trash.put(first)
    trash.put(second)

    assert not first.exists() and not second.exists()
    kept = sorted(p.relative_to(trash.folder).as_posix() for p in trash.folder.rglob("*.dcm"))
    assert kept == ["1-storage/series/instance.dcm", "2-index/series/instance.dcm"]
    trash.empty()
    assert not trash.folder.exists()


def test_a_short_disk_empties_the_trash_before_setting_more_aside(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash", keep_free=0)
    trash.put(_storage(tmp_path, "first"))
    trash.keep_free = 1 << 62  # more than any disk has free

    trash.put(_storage(tmp_path, "second"))

    assert [p.name for p in trash.folder.iterdir()] == ["2-second"]
