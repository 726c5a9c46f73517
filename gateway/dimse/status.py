"""Named DIMSE status codes (PS3.4 Annex B, PS3.7 Annex C) and the one mapping from GatewayError to them."""

from __future__ import annotations

from gateway.errors import (
    DatasetMismatch,
    IndexUnavailable,
    InvalidDicom,
    InvalidUID,
    QueueUnavailable,
    StorageUnavailable,
)

SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110  # PS3.7 C.4.2: general failure, details only in the log
STORAGE_OUT_OF_RESOURCES = 0xA700  # PS3.4 B.2.3 Refused: out of resources (object store)
STORAGE_OUT_OF_RESOURCES_QUEUE = 0xA701  # PS3.4 B.2.3 A7xx: the task broker could not take the instance
STORAGE_OUT_OF_RESOURCES_INDEX = 0xA702  # PS3.4 B.2.3 A7xx: the index could not be reached
STORAGE_DATASET_DOES_NOT_MATCH = 0xA900  # PS3.4 B.2.3 Error: data set does not match SOP class / command
STORAGE_CANNOT_UNDERSTAND = 0xC000  # PS3.4 B.2.3 Error: cannot understand (unparseable dataset)
STORAGE_CANNOT_UNDERSTAND_UID = 0xC001  # PS3.4 B.2.3 Cxxx: a required UID is missing or malformed

_STORE_STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (StorageUnavailable, STORAGE_OUT_OF_RESOURCES),
    (QueueUnavailable, STORAGE_OUT_OF_RESOURCES_QUEUE),
    (IndexUnavailable, STORAGE_OUT_OF_RESOURCES_INDEX),
    (DatasetMismatch, STORAGE_DATASET_DOES_NOT_MATCH),
    (InvalidUID, STORAGE_CANNOT_UNDERSTAND_UID),
    (InvalidDicom, STORAGE_CANNOT_UNDERSTAND),
)


def store_status(error: Exception) -> int:
    """Return the C-STORE status for `error`; anything unmapped is a processing failure."""
    for kind, status in _STORE_STATUSES:
        if isinstance(error, kind):
            return status
    return PROCESSING_FAILURE
