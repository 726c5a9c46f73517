"""UID validation per PS3.5 9.1."""

from __future__ import annotations

import pytest

from gateway.dicom.uids import is_valid_uid, validate_uid
from gateway.errors import InvalidUID


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2", "0", "1.0.3", "2.25." + "1" * 59])
def test_valid_uids_pass(uid: str) -> None:
    assert is_valid_uid(uid)
    assert validate_uid(uid, "X") == uid


@pytest.mark.parametrize(
    ("uid", "reason"),
    [
        ("../etc/passwd", "not a valid UID"),
        ("1.2.3/../../x", "not a valid UID"),
        ("1." + "2" * 63, "longer than 64"),
        ("1.2.abc", "not a valid UID"),
        ("1.02.3", "not a valid UID"),
        ("1..2", "not a valid UID"),
        (".1.2", "not a valid UID"),
        ("", "missing"),
        (None, "missing"),
    ],
)
def test_invalid_uids_are_rejected_with_the_reason(uid: str | None, reason: str) -> None:
    with pytest.raises(InvalidUID, match=reason):
        validate_uid(uid, "StudyInstanceUID")
    if uid:
        assert not is_valid_uid(uid)


def test_dicom_padding_is_stripped() -> None:
    assert validate_uid("1.2.3\x00", "X") == "1.2.3"
