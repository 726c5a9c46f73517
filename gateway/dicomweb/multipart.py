"""multipart/related bodies (RFC 2387, PS3.18 8.6): a streaming writer, and a streaming parser built on
python-multipart's push parser so a STOW-RS body is never held in memory whole.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import IO

from python_multipart.multipart import MultipartParser

from gateway.errors import InvalidQuery, PayloadTooLarge, UnsupportedMediaType

CRLF = b"\r\n"
# Parts larger than this spill from memory to a temporary file while the body is read.
SPOOL_IN_MEMORY = 8 << 20


def new_boundary() -> str:
    """A boundary that cannot occur in DICOM data by chance."""
    return uuid.uuid4().hex


def content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    """The Content-Type header of a multipart/related response."""
    value = f'multipart/related; type="{part_type}"; boundary={boundary}'
    if transfer_syntax:
        value += f"; transfer-syntax={transfer_syntax}"
    return value


@dataclass
class Part:
    """One part to send: its headers and its body as an iterable of chunks (read lazily)."""

    headers: dict[str, str]
    body: Iterable[bytes]


def write_multipart(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """Yield the bytes of a multipart/related body; each part's body is pulled only when reached."""
    opening = f"--{boundary}\r\n".encode()
    for part in parts:
        head = "".join(f"{name}: {value}\r\n" for name, value in part.headers.items())
        yield opening + head.encode() + CRLF
        yield from part.body
        yield CRLF
    yield f"--{boundary}--\r\n".encode()


@dataclass
class ReceivedPart:
    """A part read from a request: its headers and its body spooled to memory or a temporary file."""

    headers: dict[str, str] = field(default_factory=dict)
    body: IO[bytes] = field(default_factory=lambda: tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY))
    size: int = 0

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def read(self) -> bytes:
        self.body.seek(0)
        return self.body.read()

    def close(self) -> None:
        self.body.close()


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type header into its lower-case media type and parameters (RFC 2045 rules)."""
    message = Message()
    message["content-type"] = value
    params = {k.lower(): v for k, v in message.get_params(header="content-type", failobj=[])[1:]}
    return message.get_content_type(), params


async def read_multipart(content_type_header: str, chunks: AsyncIterator[bytes], max_bytes: int) -> list[ReceivedPart]:
    """Parse a multipart/related request body into parts; raise on a malformed or oversized body.

    Raises UnsupportedMediaType (not multipart/related), InvalidQuery (no boundary, broken or
    truncated body) and PayloadTooLarge (more than `max_bytes`).
    """
    media_type, params = parse_content_type(content_type_header)
    if media_type != "multipart/related":
        raise UnsupportedMediaType(f"expected multipart/related, got {media_type or 'no Content-Type'}")
    boundary = params.get("boundary")
    if not boundary:
        raise InvalidQuery("Content-Type", "multipart/related without a boundary parameter")

    parts: list[ReceivedPart] = []
    header_field: list[bytes] = []
    header_value: list[bytes] = []
    finished = False

    def on_part_begin() -> None:
        parts.append(ReceivedPart())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].body.write(data[start:end])
        parts[-1].size += end - start

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.append(data[start:end])

    def on_header_end() -> None:
        name = b"".join(header_field).decode("latin-1").strip().lower()
        parts[-1].headers[name] = b"".join(header_value).decode("latin-1").strip()
        header_field.clear()
        header_value.clear()

    def on_end() -> None:
        nonlocal finished
        finished = True

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_end": on_end,
        },
    )
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes:
                raise PayloadTooLarge(f"request body exceeds {max_bytes} bytes")
            parser.write(chunk)
        parser.finalize()
    except (PayloadTooLarge, InvalidQuery):
        _close(parts)
        raise
    except Exception as exc:  # python-multipart raises its own error types for broken framing
        _close(parts)
        raise InvalidQuery("body", f"malformed multipart body: {exc}") from exc
    if not finished:
        _close(parts)
        raise InvalidQuery("body", "multipart body is truncated (no closing boundary)")
    return parts


def _close(parts: list[ReceivedPart]) -> None:
    for part in parts:
        part.close()
