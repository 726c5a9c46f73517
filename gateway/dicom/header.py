"""Parse a Part 10 header (everything before Pixel Data) and locate its frames, without loading pixel data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import structlog
from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from gateway.dicom.attributes import INDEXED_KEYWORDS
from gateway.dicom.fast_header import FastHeader, NeedMore, Unsupported, parse
from gateway.dicom.frames import PixelDataLayout, locate_frames
from gateway.dicom.json_model import dataset_to_json
from gateway.errors import InvalidDicom

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ParsedHeader:
    """A header dataset, the transfer syntax it was stored in, and its pixel data layout if any."""

    dataset: Dataset
    transfer_syntax_uid: str
    pixel_data: PixelDataLayout | None


def read_header(fp: BinaryIO) -> ParsedHeader:
    """Read the Part 10 stream up to Pixel Data; raise InvalidDicom when it is not a readable DICOM file."""
    try:
        ds = dcmread(fp, stop_before_pixels=True)
        transfer_syntax = UID(ds.file_meta.get("TransferSyntaxUID", ""))
        if not transfer_syntax:
            raise InvalidDicom("file meta has no TransferSyntaxUID")
        layout = None
        # Deflated data is inflated in memory by pydicom, so its offsets do not map onto the object.
        if transfer_syntax != DeflatedExplicitVRLittleEndian:
            layout = locate_frames(fp, ds, transfer_syntax.is_little_endian, transfer_syntax.is_implicit_VR)
    except InvalidDicom:
        raise
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise InvalidDicom(f"cannot parse DICOM header: {exc}") from exc
    return ParsedHeader(ds, str(transfer_syntax), layout)


# Top-level values the ingest and indexing paths read, and the frame layout needs.
HEADER_KEYWORDS: tuple[str, ...] = (
    *INDEXED_KEYWORDS,
    "SamplesPerPixel",
    "BitsAllocated",
    "ExtendedOffsetTable",
)
HEADER_TAGS: dict[int, str] = {
    tag: keyword for keyword in HEADER_KEYWORDS if (tag := tag_for_keyword(keyword)) is not None
}
# What ingest reads from a received header: the UIDs it checks and files the object under, and what
# locating the pixel data needs. Converting only these saves the SCP a quarter of its header time.
INGEST_TAGS: dict[int, str] = {
    tag: keyword
    for keyword in (
        "SOPClassUID",
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Rows",
        "Columns",
        "SamplesPerPixel",
        "BitsAllocated",
        "NumberOfFrames",
        "ExtendedOffsetTable",
    )
    if (tag := tag_for_keyword(keyword)) is not None
}
_META_KEYWORDS = {
    0x00020002: "MediaStorageSOPClassUID",
    0x00020003: "MediaStorageSOPInstanceUID",
    0x00020010: "TransferSyntaxUID",
}
_FIRST_READ = 16 * 1024
_MAX_FAST_HEADER = 8 * 1024 * 1024  # a larger header is left to pydicom


@dataclass(frozen=True)
class HeaderValues:
    """A header's top-level values (`.get(keyword)`), file meta, layout and optionally its DICOM JSON.

    `values` and `meta` are pydicom datasets or plain mappings with the same values, depending on which
    reader could read the header (see fast_header.py).
    """

    values: Dataset | Mapping[str, Any]
    meta: Dataset | Mapping[str, Any]
    transfer_syntax_uid: str
    pixel_data: PixelDataLayout | None
    json: dict[str, Any] | None


def _fast(fp: BinaryIO, size: int, bulk_base: str | None, tags: dict[int, str]) -> FastHeader | None:
    data = fp.read(min(size, _FIRST_READ))
    while True:
        try:
            return parse(data, tags, complete=len(data) >= size, bulk_base=bulk_base)
        except NeedMore:
            if len(data) >= min(size, _MAX_FAST_HEADER):
                return None
            more = fp.read(min(len(data), size - len(data)))
            if not more:
                return None
            data += more
        except Unsupported as exc:
            log.debug("header.pydicom_reader", reason=str(exc))
            return None


def read_header_values(
    fp: BinaryIO, size: int, bulk_base: str | None = None, tags: dict[int, str] = HEADER_TAGS
) -> HeaderValues:
    """Read the header of a seekable Part 10 stream of `size` bytes, with its DICOM JSON when `bulk_base`.

    `values` holds at least the values of `tags` (pydicom's dataset, when it read the header, holds all).
    The fast reader is tried first and pydicom reads whatever it declines. Raises InvalidDicom.
    """
    start = fp.tell()
    fast = _fast(fp, size, bulk_base, tags)
    if fast is None:
        fp.seek(start)
        header = read_header(fp)
        ds = header.dataset
        json = dataset_to_json(ds, bulk_base) if bulk_base is not None else None
        return HeaderValues(ds, ds.file_meta, header.transfer_syntax_uid, header.pixel_data, json)
    layout = None
    if fast.pixel_data_at is not None:
        fp.seek(start + fast.pixel_data_at)
        layout = locate_frames(fp, fast.values, True, fast.implicit_vr)
    meta = {keyword: fast.meta[tag] for tag, keyword in _META_KEYWORDS.items() if tag in fast.meta}
    return HeaderValues(fast.values, meta, fast.transfer_syntax_uid, layout, fast.json)
