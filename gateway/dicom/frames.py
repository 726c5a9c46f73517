"""Byte ranges of each pixel data frame inside a stored Part 10 object, so frames are served by range reads."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from pydicom.dataset import Dataset

from gateway.errors import InvalidDicom

PIXEL_DATA_TAG = 0x7FE00010
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
# PS3.5 7.1.2: explicit VRs with a 2-byte reserved field and a 4-byte length.
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}

Fragment = list[int]  # [offset, length] in the object
Frame = list[Fragment]


@dataclass(frozen=True)
class PixelDataLayout:
    """Where the pixel data value lies and how it splits into frames (None when it cannot be split)."""

    vr: str
    encapsulated: bool
    value_offset: int
    value_length: int | None  # None for encapsulated (undefined length)
    frames: list[Frame] | None


def _native_frame_length(ds: Dataset | Mapping[str, Any]) -> int | None:
    rows, columns = ds.get("Rows"), ds.get("Columns")
    bits = ds.get("BitsAllocated")
    if not rows or not columns or not bits or bits % 8:  # 1-bit frames are not byte aligned
        return None
    return int(rows) * int(columns) * int(ds.get("SamplesPerPixel", 1) or 1) * (int(bits) // 8)


def _frame_count(ds: Dataset | Mapping[str, Any]) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _looks_like_frame_start(head: bytes) -> bool:
    # JPEG/JPEG-LS SOI, JPEG 2000 / HTJ2K codestream SOC, or a JP2 signature box.
    return head.startswith((b"\xff\xd8", b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  "))


def _group(fragments: list[Fragment], item_starts: list[int], boundaries: list[int]) -> list[Frame]:
    frames: list[Frame] = []
    for index, start in enumerate(boundaries):
        end = boundaries[index + 1] if index + 1 < len(boundaries) else None
        frames.append(
            [
                frag
                for frag, pos in zip(fragments, item_starts, strict=True)
                if pos >= start and (end is None or pos < end)
            ]
        )
    return frames


def locate_frames(
    fp: BinaryIO, ds: Dataset | Mapping[str, Any], little_endian: bool, implicit_vr: bool
) -> PixelDataLayout | None:
    """Read the pixel data element header at fp's position and return its frame layout.

    `fp` must stand at the start of the Pixel Data element (where pydicom stops with stop_before_pixels).
    Returns None when there is no Pixel Data element there. Raises InvalidDicom for a truncated element.
    """
    start = fp.tell()
    header = fp.read(8)
    if len(header) < 8:
        return None
    endian = "<" if little_endian else ">"
    group, element = struct.unpack(f"{endian}HH", header[:4])
    if (group << 16 | element) != PIXEL_DATA_TAG:
        return None
    if implicit_vr:
        vr = b"OW"
        (length,) = struct.unpack(f"{endian}L", header[4:8])
        value_offset = start + 8
    else:
        vr = header[4:6]
        if vr in _LONG_VRS:
            extra = fp.read(4)
            if len(extra) < 4:
                raise InvalidDicom("pixel data element header is truncated")
            (length,) = struct.unpack(f"{endian}L", extra)
            value_offset = start + 12
        else:
            (length,) = struct.unpack(f"{endian}H", header[6:8])
            value_offset = start + 8
    frame_count = _frame_count(ds)
    if length != _UNDEFINED:
        frame_length = _native_frame_length(ds)
        frames: list[Frame] | None = None
        if frame_length and frame_length * frame_count <= length:
            frames = [[[value_offset + i * frame_length, frame_length]] for i in range(frame_count)]
        return PixelDataLayout(vr.decode("ascii", "replace"), False, value_offset, length, frames)
    return PixelDataLayout("OB", True, value_offset, None, _encapsulated_frames(fp, ds, value_offset, frame_count))


def _encapsulated_frames(
    fp: BinaryIO, ds: Dataset | Mapping[str, Any], value_offset: int, frame_count: int
) -> list[Frame] | None:
    # PS3.5 A.4: items are always little endian; the first is the Basic Offset Table.
    fp.seek(value_offset)
    offset_table: list[int] = []
    fragments: list[Fragment] = []
    item_starts: list[int] = []  # relative to the first fragment's item tag, as BOT offsets are
    first_fragment_at: int | None = None
    position = value_offset
    first = True
    while True:
        head = fp.read(8)
        if len(head) < 8:
            raise InvalidDicom("encapsulated pixel data is truncated")
        tag_group, tag_element, length = struct.unpack("<HHL", head)
        tag = tag_group << 16 | tag_element
        if tag == _SEQUENCE_DELIMITER:
            break
        if tag != _ITEM or length == _UNDEFINED:
            raise InvalidDicom(f"unexpected tag {tag:08X} in encapsulated pixel data")
        if first:
            table = fp.read(length)
            if len(table) < length:
                raise InvalidDicom("basic offset table is truncated")
            offset_table = list(struct.unpack(f"<{length // 4}L", table[: length - length % 4]))
            first = False
        else:
            if first_fragment_at is None:
                first_fragment_at = position
            fragments.append([position + 8, length])
            item_starts.append(position - first_fragment_at)
            fp.seek(length, 1)
        position += 8 + length
    if not fragments:
        return None
    if frame_count == 1:
        return [fragments]
    if len(fragments) == frame_count:
        return [[fragment] for fragment in fragments]
    extended = ds.get("ExtendedOffsetTable")
    if extended is not None:
        offsets = list(struct.unpack(f"<{len(extended) // 8}Q", extended))
        if len(offsets) == frame_count:
            return _group(fragments, item_starts, offsets)
    if len(offset_table) == frame_count:
        return _group(fragments, item_starts, offset_table)
    boundaries: list[int] = []
    for fragment, item_start in zip(fragments, item_starts, strict=True):
        fp.seek(fragment[0])
        if _looks_like_frame_start(fp.read(12)):
            boundaries.append(item_start)
    if len(boundaries) == frame_count:
        return _group(fragments, item_starts, boundaries)
    return None
