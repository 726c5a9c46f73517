"""The one ingest path shared by the SCP, `import` and STOW-RS: validate, store durably, enqueue, then succeed."""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO

import structlog

from gateway import __version__
from gateway.dicom.header import INGEST_TAGS, read_header_values
from gateway.dicom.seal import seal
from gateway.dicom.uids import validate_uid
from gateway.errors import DatasetMismatch, GatewayError, InvalidDicom, StorageUnavailable
from gateway.queue import TaskQueue
from gateway.storage.base import ObjectStore
from gateway.storage.keys import instance_key

log = structlog.get_logger(__name__)

# Our implementation identity in every file meta we write (PS3.10 7.1).
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1531.1"
IMPLEMENTATION_VERSION_NAME = f"DICOMGW_{__version__.replace('.', '')}"[:16]
_LOCK_STRIPES = 64


@dataclass(frozen=True)
class IngestResult:
    """What happened to one instance: where it lives and whether this call wrote it."""

    key: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    written: bool  # False when an identical object was already stored


def _element(group_element: int, vr: bytes, value: bytes) -> bytes:
    # PS3.5 7.1.2 explicit VR little endian; OB has a reserved field and a 4-byte length.
    tag = struct.pack("<HH", group_element >> 16, group_element & 0xFFFF)
    if vr == b"OB":
        return tag + vr + b"\x00\x00" + struct.pack("<L", len(value)) + value
    return tag + vr + struct.pack("<H", len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    data = text.encode("ascii", "replace")
    return data + pad if len(data) % 2 else data


def part10_from_dataset(
    dataset: bytes | Sequence[memoryview],
    transfer_syntax_uid: str,
    sop_class_uid: str,
    sop_instance_uid: str,
    source_ae: str | None,
) -> bytes:
    """Return a Part 10 file: sealed preamble, file meta for the received dataset, and the dataset as received.

    `dataset` may be the fragments it arrived in (the fast receiver's PDVs): they are joined here, once.
    The preamble carries the file's checksum (gateway/dicom/seal.py), so the file may be written in place.

    The file meta (PS3.10 7.1) is assembled from bytes rather than with pydicom's writer: it is a
    handful of fixed elements, and this runs once per received instance on the SCP's hot path.
    """
    elements = [
        _element(0x00020001, b"OB", b"\x00\x01"),
        _element(0x00020002, b"UI", _padded(sop_class_uid, b"\x00")),
        _element(0x00020003, b"UI", _padded(sop_instance_uid, b"\x00")),
        _element(0x00020010, b"UI", _padded(transfer_syntax_uid, b"\x00")),
        _element(0x00020012, b"UI", _padded(IMPLEMENTATION_CLASS_UID, b"\x00")),
        _element(0x00020013, b"SH", _padded(IMPLEMENTATION_VERSION_NAME, b" ")),
    ]
    if source_ae:
        elements.append(_element(0x00020016, b"AE", _padded(source_ae.strip()[:16], b" ")))
    body = b"".join(elements)
    group_length = _element(0x00020000, b"UL", struct.pack("<L", len(body)))
    parts = (b"DICM", group_length, body, *((dataset,) if isinstance(dataset, bytes) else dataset))
    return b"".join((seal(parts), *parts))


class IngestService:
    """Validates an instance, writes it to the object store and queues its indexing; idempotent per SOP UID."""

    def __init__(self, store: ObjectStore, queue: TaskQueue, prefix: str = "") -> None:
        self.store = store
        self.queue = queue
        self.prefix = prefix
        # Serialize concurrent ingests of one SOP Instance UID within this process (write vs. compensation).
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    def ingest_dataset(
        self,
        dataset: bytes | Sequence[memoryview],
        transfer_syntax_uid: str,
        sop_class_uid: str,
        sop_instance_uid: str,
        source_ae: str | None = None,
    ) -> IngestResult:
        """Ingest a dataset received with a DIMSE command whose UIDs it must match (PS3.4 B.2.3).

        Raises InvalidDicom (cannot understand), DatasetMismatch, StorageUnavailable or QueueUnavailable.
        """
        command_class = validate_uid(sop_class_uid, "AffectedSOPClassUID")
        command_instance = validate_uid(sop_instance_uid, "AffectedSOPInstanceUID")
        data = part10_from_dataset(dataset, transfer_syntax_uid, command_class, command_instance, source_ae)
        return self._ingest(data, command_class, command_instance, sealed=True)

    def ingest_file(self, data: bytes, expected_study_uid: str | None = None) -> IngestResult:
        """Ingest a Part 10 file kept byte for byte; its file meta stands in for the command.

        `expected_study_uid` (STOW-RS to /studies/{study}) refuses instances of another study.
        Raises InvalidDicom, DatasetMismatch, StorageUnavailable or QueueUnavailable.
        """
        if len(data) < 132 or data[128:132] != b"DICM":
            raise InvalidDicom("not a DICOM Part 10 file (no DICM prefix)")
        return self._ingest(data, None, None, expected_study_uid)

    def _ingest(
        self,
        data: bytes,
        command_class: str | None,
        command_instance: str | None,
        expected_study_uid: str | None = None,
        sealed: bool = False,
    ) -> IngestResult:
        header = read_header_values(BytesIO(data), len(data), tags=INGEST_TAGS)
        ds = header.values
        layout = header.pixel_data
        if layout is not None and layout.value_length is not None:
            if layout.value_offset + layout.value_length > len(data):
                raise InvalidDicom("pixel data is truncated")
        sop_instance = validate_uid(ds.get("SOPInstanceUID"), "SOPInstanceUID")
        sop_class = validate_uid(ds.get("SOPClassUID"), "SOPClassUID")
        meta = header.meta
        command_instance = command_instance or validate_uid(
            meta.get("MediaStorageSOPInstanceUID"), "MediaStorageSOPInstanceUID"
        )
        command_class = command_class or validate_uid(meta.get("MediaStorageSOPClassUID"), "MediaStorageSOPClassUID")
        if sop_instance != command_instance:
            raise DatasetMismatch(f"SOPInstanceUID {sop_instance} differs from the command's {command_instance}")
        if sop_class != command_class:
            raise DatasetMismatch(f"SOPClassUID {sop_class} differs from the command's {command_class}")
        uids = instance_key(ds.get("StudyInstanceUID"), ds.get("SeriesInstanceUID"), sop_instance)
        if expected_study_uid is not None and uids.study_instance_uid != expected_study_uid:
            raise DatasetMismatch(
                f"StudyInstanceUID {uids.study_instance_uid} differs from the request's {expected_study_uid}"
            )
        key = uids.key(self.prefix)
        lock = self._locks[zlib.crc32(sop_instance.encode()) % _LOCK_STRIPES]
        with lock:
            written = self._put_if_changed(key, data, sealed)
            try:
                self.queue.enqueue_index(key)
            except GatewayError:
                if written == "created":
                    # Durable before success, compensate on failure: the peer retries, so leave nothing behind.
                    try:
                        self.store.delete(key)
                    except StorageUnavailable:
                        log.error("ingest.compensation_failed", key=key)
                raise
        log.debug("ingest.stored", key=key, written=written)
        return IngestResult(
            key, sop_class, sop_instance, uids.study_instance_uid, uids.series_instance_uid, written != "unchanged"
        )

    def _put_if_changed(self, key: str, data: bytes, sealed: bool) -> str:
        # A sealed file (ours, from a DIMSE dataset) may be written in place when its key is free: one
        # device flush instead of two on the local folder; a torn write is told by its seal. A file
        # kept byte for byte (STOW-RS, import) has no seal, so it is always written atomically.
        if sealed and self.store.create(key, data):
            return "created"
        info = self.store.head(key)
        if info is not None and info.size == len(data) and self.store.read(key) == data:
            return "unchanged"
        self.store.put(key, data)
        return "created" if info is None else "replaced"
