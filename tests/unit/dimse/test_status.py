"""GatewayError -> C-STORE status mapping (PS3.4 B.2.3)."""

from __future__ import annotations

import pytest

from gateway.dimse import status
from gateway.errors import (
    DatasetMismatch,
    IndexUnavailable,
    InvalidDicom,
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
