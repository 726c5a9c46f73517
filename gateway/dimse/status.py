"""Named DIMSE status codes (PS3.4 Annex B and C, PS3.7 Annex C) and the one mapping from GatewayError to them."""

from __future__ import annotations

from gateway.errors import (
    DatasetMismatch,
    IndexUnavailable,
    InvalidDicom,
    InvalidQuery,
    InvalidUID,
    QueueUnavailable,
    StorageUnavailable,
)

SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110  # PS3.7 C.4.2: general failure, details only in the log
NOT_AUTHORIZED = 0x0124  # PS3.7 Annex C general status "Refused: Not authorized": the registry forbids it
STORAGE_OUT_OF_RESOURCES = 0xA700  # PS3.4 B.2.3 Refused: out of resources (object store)
STORAGE_OUT_OF_RESOURCES_QUEUE = 0xA701  # PS3.4 B.2.3 A7xx: the task broker could not take the instance
STORAGE_OUT_OF_RESOURCES_INDEX = 0xA702  # PS3.4 B.2.3 A7xx: the index could not be reached
STORAGE_DATASET_DOES_NOT_MATCH = 0xA900  # PS3.4 B.2.3 Error: data set does not match SOP class / command
STORAGE_CANNOT_UNDERSTAND = 0xC000  # PS3.4 B.2.3 Error: cannot understand (unparseable dataset)
STORAGE_CANNOT_UNDERSTAND_UID = 0xC001  # PS3.4 B.2.3 Cxxx: a required UID is missing or malformed

# Query/Retrieve: PS3.4 C.4.1.1.4 (C-FIND), C.4.2.1.5 (C-MOVE), C.4.3.1.4 (C-GET).
PENDING = 0xFF00  # matches (or sub-operations) are continuing
PENDING_OPTIONAL_KEYS_UNSUPPORTED = 0xFF01  # C-FIND: continuing, an optional key was not matched on
CANCELLED = 0xFE00  # terminated by C-CANCEL
FIND_OUT_OF_RESOURCES = 0xA700  # C-FIND Refused: out of resources
RETRIEVE_UNABLE_TO_CALCULATE_MATCHES = 0xA701  # C-MOVE/C-GET Refused: out of resources, number of matches
RETRIEVE_UNABLE_TO_PERFORM_SUBOPERATIONS = 0xA702  # C-MOVE/C-GET Refused: out of resources, sub-operations
MOVE_DESTINATION_UNKNOWN = 0xA801  # C-MOVE Refused: move destination unknown
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900  # Error: identifier does not match SOP class
UNABLE_TO_PROCESS = 0xC000  # Failed: unable to process (C000-CFFF)
SUBOPERATIONS_WARNING = 0xB000  # Warning: sub-operations complete, one or more failures or warnings

_STORE_STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (StorageUnavailable, STORAGE_OUT_OF_RESOURCES),
    (QueueUnavailable, STORAGE_OUT_OF_RESOURCES_QUEUE),
    (IndexUnavailable, STORAGE_OUT_OF_RESOURCES_INDEX),
    (DatasetMismatch, STORAGE_DATASET_DOES_NOT_MATCH),
    (InvalidUID, STORAGE_CANNOT_UNDERSTAND_UID),
    (InvalidDicom, STORAGE_CANNOT_UNDERSTAND),
)

_FIND_STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (IndexUnavailable, FIND_OUT_OF_RESOURCES),
    (InvalidQuery, IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS),
    (InvalidDicom, UNABLE_TO_PROCESS),
)

_RETRIEVE_STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (IndexUnavailable, RETRIEVE_UNABLE_TO_CALCULATE_MATCHES),
    (InvalidQuery, IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS),
    (InvalidDicom, UNABLE_TO_PROCESS),
)


def _lookup(table: tuple[tuple[type[Exception], int], ...], error: Exception, default: int) -> int:
    for kind, status in table:
        if isinstance(error, kind):
            return status
    return default


def store_status(error: Exception) -> int:
    """Return the C-STORE status for `error`; anything unmapped is a processing failure."""
    return _lookup(_STORE_STATUSES, error, PROCESSING_FAILURE)


def find_status(error: Exception) -> int:
    """Return the C-FIND failure status for `error`; anything unmapped is "unable to process"."""
    return _lookup(_FIND_STATUSES, error, UNABLE_TO_PROCESS)


def retrieve_status(error: Exception) -> int:
    """Return the C-MOVE / C-GET failure status for `error`; anything unmapped is "unable to process"."""
    return _lookup(_RETRIEVE_STATUSES, error, UNABLE_TO_PROCESS)
