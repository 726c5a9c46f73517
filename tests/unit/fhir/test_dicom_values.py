"""DICOM values into FHIR datatypes: person names (PS3.5 6.2.1), dates and times with zones (FHIR dateTime)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from gateway.fhir.dicom_values import (
    PersonName,
    coding,
    date_time,
    fhir_date,
    human_names,
    parse_offset,
    readable_name,
)


@pytest.mark.parametrize(
    ("alphabetic", "ideographic", "expected"),
    [
        ("Müller^Jürgen", None, "Jürgen Müller"),
        ("Smith^Anna^Maria^Dr.^", None, "Dr. Anna Maria Smith"),
        ("Smith^John^^^Jr.", None, "John Smith, Jr."),
        ("ANONYMOUS", None, "ANONYMOUS"),
        ("Yamada^Tarou", "山田^太郎", "Tarou Yamada (山田 太郎)"),
        (None, "山田^太郎", "山田 太郎"),
    ],
)
def test_readable_name(alphabetic: str | None, ideographic: str | None, expected: str) -> None:
    assert readable_name(PersonName(alphabetic, ideographic, None)) == expected


def test_human_names_mark_the_representation_of_each_group() -> None:
    names = human_names(PersonName("Yamada^Tarou", "山田^太郎", "やまだ^たろう"))
    assert [n.get("extension", [{}])[0].get("valueCode") for n in names] == [None, "IDE", "SYL"]
    assert names[0] == {"use": "official", "text": "Tarou Yamada", "family": "Yamada", "given": ["Tarou"]}
    assert names[1]["text"] == "山田 太郎"


@pytest.mark.parametrize(
    ("da", "tm", "zone", "text", "low", "length"),
    [
        ("20240115", None, None, "2024-01-15", datetime(2024, 1, 15, tzinfo=UTC), timedelta(days=1)),
        ("20240115", "101500", None, "2024-01-15", datetime(2024, 1, 15, tzinfo=UTC), timedelta(days=1)),
        (
            "20240115",
            "1015",
            timezone(timedelta(hours=1)),
            "2024-01-15T10:15:00+01:00",
            datetime(2024, 1, 15, 9, 15, tzinfo=UTC),
            timedelta(seconds=1),
        ),
        (
            "20240701",
            "235959.5",
            ZoneInfo("Europe/Berlin"),
            "2024-07-01T23:59:59.5+02:00",
            datetime(2024, 7, 1, 21, 59, 59, 500000, tzinfo=UTC),
            timedelta(microseconds=100000),
        ),
        (
            "20240115",
            "101500",
            UTC,
            "2024-01-15T10:15:00Z",
            datetime(2024, 1, 15, 10, 15, tzinfo=UTC),
            timedelta(seconds=1),
        ),
    ],
)
def test_date_time(
    da: str, tm: str | None, zone: timezone | ZoneInfo | None, text: str, low: datetime, length: timedelta
) -> None:
    value = date_time(da, tm, zone)
    assert value is not None
    assert (value.text, value.low, value.high - value.low) == (text, low, length)


@pytest.mark.parametrize("da", ["", "2024", "20241301", "00000000", "2024.01.15"])
def test_malformed_dates_are_left_out(da: str) -> None:
    assert date_time(da, "101500", UTC) is None
    assert fhir_date(da) is None


def test_offsets() -> None:
    assert parse_offset("+0530") == timezone(timedelta(hours=5, minutes=30))
    assert parse_offset("-0500") == timezone(timedelta(hours=-5))
    assert parse_offset("0100") is None and parse_offset("+2500") is None and parse_offset(None) is None


def test_coding_maps_known_schemes_and_keeps_local_codes_without_a_system() -> None:
    sct = {"00080100": {"vr": "SH", "Value": ["818981001"]}, "00080102": {"vr": "SH", "Value": ["SCT"]}}
    assert coding(sct) == {"system": "http://snomed.info/sct", "code": "818981001"}
    local = {"00080100": {"vr": "SH", "Value": ["X1"]}, "00080102": {"vr": "SH", "Value": ["99LOCAL"]}}
    assert coding(local) == {"code": "X1"}
    assert coding({}) is None
