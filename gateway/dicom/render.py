"""Rendering a frame to a consumer image (PS3.18 8.3.5 rendered resources): window, invert, scale, encode."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import pixel_array

from gateway.dicom.transcode import can_decode
from gateway.errors import InvalidQuery, NotAcceptable, NotFound

JPEG = "image/jpeg"
PNG = "image/png"
RENDERED_TYPES = (JPEG, PNG)


@dataclass(frozen=True)
class RenderOptions:
    """PS3.18 8.3.5.1 query parameters of a rendered request."""

    media_type: str = JPEG
    window: tuple[float, float] | None = None  # (center, width), linear function
    viewport: tuple[int, int] | None = None  # (columns, rows) of the largest image to return
    quality: int = 90


def parse_options(media_type: str, window: str | None, viewport: str | None, quality: str | None) -> RenderOptions:
    """Validate the rendered query parameters; raise InvalidQuery naming the bad one."""
    parsed_window = None
    if window:
        parts = window.split(",")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].strip().lower() not in ("linear", "")):
            raise InvalidQuery("window", "expected center,width[,linear]")
        try:
            center, width = float(parts[0]), float(parts[1])
        except ValueError:
            raise InvalidQuery("window", "center and width must be numbers") from None
        if width < 1:
            raise InvalidQuery("window", "width must be at least 1")
        parsed_window = (center, width)
    parsed_viewport = None
    if viewport:
        try:
            columns, rows = (int(v) for v in viewport.split(",")[:2])
        except ValueError:
            raise InvalidQuery("viewport", "expected columns,rows as positive integers") from None
        if columns < 1 or rows < 1 or columns > 8192 or rows > 8192:
            raise InvalidQuery("viewport", "columns and rows must be between 1 and 8192")
        parsed_viewport = (columns, rows)
    parsed_quality = 90
    if quality:
        try:
            parsed_quality = int(quality)
        except ValueError:
            raise InvalidQuery("quality", "expected an integer 1-100") from None
        if not 1 <= parsed_quality <= 100:
            raise InvalidQuery("quality", "expected an integer 1-100")
    return RenderOptions(media_type, parsed_window, parsed_viewport, parsed_quality)


def _default_window(ds: Dataset, values: np.ndarray) -> tuple[float, float]:
    # PS3.18 8.3.5.1.3: the instance's own VOI window when present, else the pixel value range.
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        try:
            return _first(center), max(1.0, _first(width))
        except (TypeError, ValueError, IndexError):
            pass
    low, high = float(values.min()), float(values.max())
    return (low + high) / 2, max(1.0, high - low)


def _first(value: object) -> float:
    # Window Center/Width may hold several windows (VM 1-n); the first is the default one.
    if isinstance(value, MultiValue | list | tuple):
        return float(value[0])
    return float(value)  # type: ignore[arg-type]


def _to_8bit(ds: Dataset, frame: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples > 1:
        # Colour: pydicom returns RGB (YCbCr converted while decoding); scale to 8 bits if needed.
        if frame.dtype != np.uint8:
            bits = int(ds.get("BitsStored", 8) or 8)
            frame = (frame.astype(np.float64) * (255.0 / ((1 << bits) - 1))).clip(0, 255)
        return frame.astype(np.uint8)
    values = apply_modality_lut(frame, ds).astype(np.float64)
    center, width = window or _default_window(ds, values)
    # PS3.3 C.11.2.1.2.1 linear VOI function.
    scaled: np.ndarray = np.rint(((values - (center - 0.5)) / (width - 1) + 0.5).clip(0, 1) * 255).astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        inverted: np.ndarray = 255 - scaled
        return inverted
    return scaled


def render_frame(data: bytes, number: int, options: RenderOptions) -> bytes:
    """Render frame `number` (1-based) of a Part 10 object as JPEG or PNG.

    Raises NotFound (no such frame or no pixel data) and NotAcceptable (pixel data not decodable).
    """
    if options.media_type not in RENDERED_TYPES:
        raise NotAcceptable(f"rendered images are available as {' or '.join(RENDERED_TYPES)}")
    ds = dcmread(io.BytesIO(data))
    if "PixelData" not in ds:
        raise NotFound("the instance has no pixel data to render")
    transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
    if not can_decode(transfer_syntax):
        raise NotAcceptable(f"pixel data in {transfer_syntax} cannot be decoded for rendering")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= number <= frames:
        raise NotFound(f"frame {number} does not exist (the instance has {frames})")
    frame = pixel_array(ds, index=number - 1)
    image = Image.fromarray(_to_8bit(ds, frame, options.window))
    if options.viewport is not None:
        image.thumbnail(options.viewport, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if options.media_type == JPEG:
        image.save(out, format="JPEG", quality=options.quality)
    else:
        image.save(out, format="PNG")
    return out.getvalue()
