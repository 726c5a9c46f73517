"""Parse a Part 10 header (everything before Pixel Data) and locate its frames, without loading pixel data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from gateway.dicom.frames import PixelDataLayout, locate_frames
from gateway.errors import InvalidDicom


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
