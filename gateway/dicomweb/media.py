"""DICOMweb media types (PS3.18 8.7), Accept negotiation, and a response class for DICOM JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi.responses import Response
from pydicom.uid import UID, ExplicitVRLittleEndian

from gateway.errors import NotAcceptable

DICOM_JSON = "application/dicom+json"
DICOM = "application/dicom"
OCTET_STREAM = "application/octet-stream"
MULTIPART_RELATED = "multipart/related"
ANY_TRANSFER_SYNTAX = "*"

# PS3.18 Table 8.7.3-5: the media type of a frame or bulk data item stored in an encapsulated syntax.
_ENCAPSULATED_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.100": "video/mpeg",
    "1.2.840.10008.1.2.4.101": "video/mpeg",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
    "1.2.840.10008.1.2.4.107": "video/H265",
    "1.2.840.10008.1.2.4.108": "video/H265",
}


def frame_media_type(transfer_syntax_uid: str) -> str:
    """The media type of one frame as stored: its compressed format, or octet-stream for native data."""
    return _ENCAPSULATED_MEDIA_TYPES.get(transfer_syntax_uid, OCTET_STREAM)


def is_encapsulated(transfer_syntax_uid: str) -> bool:
    """True when pixel data in this transfer syntax is encapsulated (compressed)."""
    return UID(transfer_syntax_uid).is_encapsulated


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept header: `multipart/related; type="application/dicom"; transfer-syntax=*`."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)
    quality: float = 1.0

    @property
    def part_type(self) -> str | None:
        """For multipart/related, the media type of the parts (the `type` parameter)."""
        return self.params.get("type")

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")


def _split(text: str, separator: str) -> list[str]:
    # Written by hand because no maintained library parses Accept with quoted parameters that hold
    # "/" and ";" (OHIF sends transfer-syntax="*" with quotes; dicomweb-client quotes type=...).
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def parse_accept(header: str | None) -> list[MediaRange]:
    """Parse an Accept header into media ranges, best quality first (an absent header accepts anything)."""
    if not header:
        return [MediaRange("*/*")]
    ranges = []
    for entry in _split(header, ","):
        pieces = _split(entry, ";")
        params: dict[str, str] = {}
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 1.0
        ranges.append(MediaRange(pieces[0].lower(), params, quality))
    return sorted((r for r in ranges if r.quality > 0), key=lambda r: -r.quality)


def _matches(pattern: str | None, media_type: str) -> bool:
    if pattern is None or pattern in ("*", "*/*"):
        return True
    kind, _, sub = pattern.partition("/")
    want_kind, _, want_sub = media_type.partition("/")
    return kind == want_kind and sub in ("*", want_sub)


def negotiate_multipart(accept: str | None, part_type: str, resource: str) -> str:
    """Return the transfer syntax to send `part_type` parts in: a UID, or "*" for as stored.

    PS3.18 8.7.3.5: without a transfer-syntax parameter, application/dicom defaults to explicit VR
    little endian, and so do native frames and bulk data. Raises NotAcceptable when no range fits.
    """
    for media_range in parse_accept(accept):
        if media_range.media_type == MULTIPART_RELATED:
            if not _matches(media_range.part_type or part_type, part_type):
                continue
        elif not _matches(media_range.media_type, MULTIPART_RELATED):
            continue
        if media_range.media_type in ("*/*", "multipart/*") or media_range.part_type in (None, "*/*", "*"):
            # A client that accepts anything gets what was stored (dicomweb-client asks for frames so).
            return media_range.transfer_syntax or ANY_TRANSFER_SYNTAX
        return media_range.transfer_syntax or str(ExplicitVRLittleEndian)
    raise NotAcceptable(f'{resource} is available as multipart/related; type="{part_type}", not {accept!r}')


def accepts(accept: str | None, media_type: str) -> bool:
    """True when the Accept header admits the single-part `media_type`."""
    return any(_matches(r.media_type, media_type) for r in parse_accept(accept))


class DicomJSONResponse(Response):
    """A PS3.18 `application/dicom+json` response."""

    media_type = DICOM_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
