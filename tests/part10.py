"""Helpers to take Part 10 files apart the way a C-STORE peer sends them (dataset bytes without file meta)."""

from __future__ import annotations

import struct
from pathlib import Path


def meta_end(data: bytes) -> int:
    """Return the offset where the dataset starts, from the File Meta Information Group Length (PS3.10 7.1)."""
    if data[128:132] != b"DICM":
        raise ValueError("not a Part 10 file")
    # (0002,0000) UL, explicit VR little endian: tag(4) VR(2) length(2) value(4)
    group, element = struct.unpack("<HH", data[132:136])
    assert (group, element) == (0x0002, 0x0000), "file meta must start with its group length"
    (length,) = struct.unpack("<L", data[140:144])
    return 144 + int(length)


def dataset_bytes(data: bytes) -> bytes:
    """Return the dataset part of a Part 10 file, byte for byte."""
    return data[meta_end(data) :]


def file_dataset_bytes(path: Path) -> bytes:
    """Return the dataset part of the Part 10 file at `path`."""
    return dataset_bytes(path.read_bytes())
