"""Transcoding a stored Part 10 object to explicit VR little endian, and decoding single frames.

Only the retrieve side transcodes (a client asked for native data); ingest never does.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from pydicom import Dataset, dcmread, dcmwrite
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gateway.errors import InvalidDicom, NotAcceptable

NATIVE_LITTLE_ENDIAN = frozenset({str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)})


@cache
def can_decode(transfer_syntax_uid: str) -> bool:
    """True when pixel data in this transfer syntax can be decoded with the installed plugins."""
    uid = UID(transfer_syntax_uid)
    if not uid.is_encapsulated:
        return True
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return False
    return bool(decoder.is_available)


def can_serve(stored_transfer_syntax: str, wanted: str) -> bool:
    """True when an object stored in one syntax can be sent in `wanted` ("*" = as stored)."""
    if wanted in ("*", stored_transfer_syntax):
        return True
    if wanted == str(ExplicitVRLittleEndian):
        return can_decode(stored_transfer_syntax)
    return False


def _native_little_endian_pixels(ds: Dataset) -> None:
    # Decode (or, for native data, reinterpret) the pixels and store them little endian, interleaved.
    array = ds.pixel_array
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    ds.PixelData = np.ascontiguousarray(little).tobytes()
    ds["PixelData"].VR = "OB" if ds.BitsAllocated <= 8 else "OW"
    ds["PixelData"].is_undefined_length = False
    if "PlanarConfiguration" in ds:
        ds.PlanarConfiguration = 0
    if ds.get("SamplesPerPixel", 1) == 3 and str(ds.get("PhotometricInterpretation", "")).startswith("YBR"):
        # pydicom converts YCbCr to RGB while decoding.
        ds.PhotometricInterpretation = "RGB"
    if "NumberOfFrames" not in ds and array.ndim > (3 if ds.get("SamplesPerPixel", 1) > 1 else 2):
        ds.NumberOfFrames = array.shape[0]


def to_explicit_little_endian(data: bytes) -> bytes:
    """Return the Part 10 object re-encoded in explicit VR little endian with native pixel data.

    Raises NotAcceptable when the pixel data cannot be decoded, InvalidDicom when unreadable.
    """
    try:
        ds = dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises many types for damaged files
        raise InvalidDicom(f"cannot parse stored object: {exc}") from exc
    source = UID(ds.file_meta.TransferSyntaxUID)
    if source == ExplicitVRLittleEndian:
        return data
    if "PixelData" in ds and (source.is_encapsulated or not source.is_little_endian):
        if not can_decode(str(source)):
            raise NotAcceptable(f"pixel data in {source.name} cannot be decoded here")
        try:
            _native_little_endian_pixels(ds)
        except Exception as exc:  # a decoder failure on damaged data
            raise NotAcceptable(f"pixel data in {source.name} could not be decoded: {exc}") from exc
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    # force_encoding: pydicom will not switch byte order by itself; the pixels were swapped above.
    dcmwrite(out, ds, implicit_vr=False, little_endian=True, force_encoding=True)
    return out.getvalue()


def decode_frame(data: bytes, number: int) -> bytes:
    """Return frame `number` (1-based) as native little-endian pixel bytes.

    Raises NotAcceptable when the pixel data cannot be decoded, NotFound-like ValueError when out of range.
    """
    try:
        ds = dcmread(io.BytesIO(data))
    except Exception as exc:
        raise InvalidDicom(f"cannot parse stored object: {exc}") from exc
    source = UID(ds.file_meta.TransferSyntaxUID)
    if not can_decode(str(source)):
        raise NotAcceptable(f"pixel data in {source.name} cannot be decoded here")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= number <= frames:
        raise ValueError(f"frame {number} is outside 1..{frames}")
    if source in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        length = len(ds.PixelData) // frames
        return bytes(ds.PixelData[(number - 1) * length : number * length])
    array = pixel_array(ds, index=number - 1)
    return np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False)).tobytes()
