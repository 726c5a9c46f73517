"""GatewayError -> DIMSE status mappings: C-STORE (PS3.4 B.2.3), C-FIND / C-MOVE / C-GET (PS3.4 C.4)."""

from __future__ import annotations

import pytest

from gateway.dimse import status
from gateway.errors import (
    DatasetMismatch,
    IndexUnavailable,
    InvalidDicom,
    InvalidQuery,
    InvalidUID,
    NotFound,
    QueueUnavailable,
    StorageUnavailable,
)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (StorageUnavailable("x"), 0xA700),
        (QueueUnavailable("x"), 0xA701),
        (IndexUnavailable("x"), 0xA702),
        (DatasetMismatch("x"), 0xA900),
        (InvalidUID("x"), 0xC001),
        (InvalidDicom("x"), 0xC000),
        (NotFound("x"), status.PROCESSING_FAILURE),
        (RuntimeError("x"), status.PROCESSING_FAILURE),
    ],
)
def test_each_error_maps_to_its_status(error: Exception, expected: int) -> None:
    assert status.store_status(error) == expected


@pytest.mark.parametrize(
    ("error", "find", "retrieve"),
    [
        (IndexUnavailable("x"), 0xA700, 0xA701),
        (InvalidQuery("StudyDate", "x"), 0xA900, 0xA900),
        (InvalidDicom("x"), 0xC000, 0xC000),
        (NotFound("x"), 0xC000, 0xC000),
        (RuntimeError("x"), 0xC000, 0xC000),
    ],
)
def test_query_retrieve_errors_map_to_ps34_statuses(error: Exception, find: int, retrieve: int) -> None:
    assert (status.find_status(error), status.retrieve_status(error)) == (find, retrieve)
