"""Helpers to take Part 10 files apart the way a C-STORE peer sends them (dataset bytes without file meta)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread


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


def comparable(ds: Dataset) -> Dataset:
    """Drop group lengths and trailing padding (in place), which senders may legally change."""
    for elem in list(ds):
        if elem.tag == 0xFFFCFFFC or elem.tag.element == 0x0000:
            del ds[elem.tag]
        elif elem.VR == "SQ":
            for item in elem.value:
                comparable(item)
    return ds


def assert_same_content(stored: bytes, source: Path) -> None:
    """Assert that a stored object holds the source file's data as DCMTK's storescu/dcmsend send it.

    DCMTK re-encodes while sending: it proposes explicit VR little endian first for any native file
    (so big-endian and deflated files arrive little endian), gives sequences defined lengths, and
    drops group lengths and Data Set Trailing Padding (FFFC,FFFC); encapsulated pixel data is sent
    as it is. So against DCMTK we compare every element and the pixels, not the encoding; that the
    gateway stores received bytes unchanged is tested with a sender whose bytes are known
    (tests/integration/test_scp.py::test_every_corpus_file_is_stored_byte_for_byte).
    """
    stored_ds = dcmread(io.BytesIO(stored))
    source_ds = dcmread(source)
    stored_ts, source_ts = stored_ds.file_meta.TransferSyntaxUID, source_ds.file_meta.TransferSyntaxUID
    if source_ts.is_compressed:
        assert stored_ts == source_ts, source
        assert stored_ds.PixelData == source_ds.PixelData, source
    else:
        assert not stored_ts.is_compressed, source
        if "PixelData" in source_ds:
            assert np.array_equal(stored_ds.pixel_array, source_ds.pixel_array), source
    for ds in (stored_ds, source_ds):
        ds.pop(0x7FE00010, None)
    assert comparable(stored_ds) == comparable(source_ds), source
