"""Retrieval service shared by WADO-RS, WADO-URI (and later C-GET/C-MOVE): objects, frames and bulk data.

Objects stream from the object store in large chunks; frames are read by byte range using the
offsets the index task stored, so a frame of a 2 GB multi-frame object costs one small read.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from gateway.dicom.frames import PIXEL_DATA_TAG
from gateway.dicom.transcode import can_serve, decode_frame, to_explicit_little_endian
from gateway.errors import InvalidQuery, NotAcceptable, NotFound
from gateway.index.retrieve import StoredInstance, find_instances, find_metadata
from gateway.services import Services
from gateway.storage.reader import open_object

CHUNK = 1 << 20


class RetrievalService:
    """Reads what the index says is stored; never loads a whole study into memory."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.store
        self.sessions = services.repository.sessions

    def instances(self, study: str, series: str | None = None, sop: str | None = None) -> list[StoredInstance]:
        """The stored instances of a study, series or instance; raises NotFound."""
        return find_instances(self.sessions, study, series, sop)

    def metadata(self, study: str, series: str | None = None, sop: str | None = None) -> tuple[list[str], datetime]:
        """The stored DICOM JSON text of each instance and the newest index time; raises NotFound."""
        return find_metadata(self.sessions, study, series, sop)

    def check_servable(self, instances: list[StoredInstance], transfer_syntax: str) -> None:
        """Raise NotAcceptable before streaming starts when one instance cannot be sent as asked."""
        for item in instances:
            if not can_serve(item.transfer_syntax_uid, transfer_syntax):
                raise NotAcceptable(
                    f"instance {item.sop_instance_uid} is stored in {item.transfer_syntax_uid} and cannot be "
                    f"sent in {transfer_syntax}; ask for transfer-syntax=* to get it as stored"
                )

    def object_chunks(self, item: StoredInstance, transfer_syntax: str) -> Iterator[bytes]:
        """The Part 10 bytes of one instance: streamed as stored, or transcoded when asked for."""
        if transfer_syntax in ("*", item.transfer_syntax_uid):
            yield from self.store.open(item.object_key, CHUNK)
        else:
            yield to_explicit_little_endian(self.store.read(item.object_key))

    def frames(self, item: StoredInstance, numbers: list[int], decoded: bool) -> Iterator[bytes]:
        """Yield each requested frame, as stored (by byte range) or decoded to native pixels."""
        count = item.number_of_frames or 1
        for number in numbers:
            if not 1 <= number <= count:
                raise NotFound(f"frame {number} of instance {item.sop_instance_uid} (it has {count})")
        return self._frames(item, numbers, decoded)

    def _frames(self, item: StoredInstance, numbers: list[int], decoded: bool) -> Iterator[bytes]:
        if decoded or item.frame_offsets is None:
            yield from self._frames_from_object(item, numbers, decoded)
            return
        for number in numbers:
            fragments = item.frame_offsets[number - 1]
            yield b"".join(self.store.read_range(item.object_key, off, off + length) for off, length in fragments)

    def _frames_from_object(self, item: StoredInstance, numbers: list[int], decoded: bool) -> Iterator[bytes]:
        # Fallback when offsets are unknown (deflated objects) or pixels must be decoded: one read.
        data = self.store.read(item.object_key)
        if decoded or not UID(item.transfer_syntax_uid).is_encapsulated:
            for number in numbers:
                try:
                    yield decode_frame(data, number)
                except ValueError as exc:
                    raise NotFound(str(exc)) from exc
            return
        ds = dcmread(io.BytesIO(data))
        stored = list(generate_frames(ds.PixelData, number_of_frames=item.number_of_frames or 1))
        for number in numbers:
            yield stored[number - 1]

    def bulkdata(self, item: StoredInstance, tag: str) -> bytes:
        """The value of a non-pixel bulk data element (found in the header, also inside sequences)."""
        try:
            wanted = Tag(int(tag, 16))
        except ValueError:
            raise InvalidQuery("tag", f"{tag!r} is not an 8-digit hexadecimal tag") from None
        if wanted == PIXEL_DATA_TAG:
            raise ValueError("pixel data is served as frames")
        with open_object(self.store, item.object_key) as fp:
            ds = dcmread(fp, stop_before_pixels=True)
        value = _find_value(ds, wanted)
        if value is None:
            raise NotFound(f"bulk data {tag} of instance {item.sop_instance_uid}")
        return value


def _find_value(ds: Dataset, tag: BaseTag) -> bytes | None:
    for element in ds:
        if element.tag == tag and isinstance(element.value, bytes | bytearray):
            return bytes(element.value)
        if element.VR == "SQ":
            for item in element.value:
                found = _find_value(item, tag)
                if found is not None:
                    return found
    return None
