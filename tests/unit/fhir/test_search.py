"""Parsing FHIR search parameters (search.html): tokens, references, dates with prefixes, paging, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.errors import InvalidQuery
from gateway.fhir.search import (
    MAX_COUNT,
    DateCriterion,
    TokenCriterion,
    ValueCriterion,
    parse_date,
    parse_search,
)


def one(name: str, value: str, resource_type: str = "ImagingStudy") -> object:
    request = parse_search(resource_type, [(name, value)], None)
    assert len(request.criteria) == 1
    return request.criteria[0]


@pytest.mark.parametrize(
    ("value", "alternatives"),
    [
        ("urn:dicom:uid|urn:oid:1.2.3", (("urn:dicom:uid", "urn:oid:1.2.3"),)),
        ("ACC1", ((None, "ACC1"),)),
        ("|ACC1", (("", "ACC1"),)),
        ("urn:dicom:uid|", (("urn:dicom:uid", None),)),
        ("A,B", ((None, "A"), (None, "B"))),
        (r"A\,B", ((None, "A,B"),)),
        (r"A\|B", ((None, "A|B"),)),
    ],
)
def test_token_values(value: str, alternatives: tuple[tuple[str | None, str | None], ...]) -> None:
    assert one("identifier", value) == TokenCriterion("identifier", alternatives)


@pytest.mark.parametrize("value", ["|", "a|b|c", ",", "A,"])
def test_malformed_tokens_are_rejected(value: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        one("identifier", value)
    assert caught.value.parameter == "identifier"


@pytest.mark.parametrize("value", ["Patient/p-1", "p-1", "http://example.org/fhir/Patient/p-1"])
def test_patient_references(value: str) -> None:
    assert one("patient", value) == TokenCriterion("patient", (("", "p-1"),))
    assert one("subject", value) == TokenCriterion("patient", (("", "p-1"),))


def test_identifier_modifier_on_subject_and_patient() -> None:
    expected = TokenCriterion("subject-identifier", (("urn:oid:1.2", "PID"),))
    assert one("subject:identifier", "urn:oid:1.2|PID") == expected
    assert one("patient:identifier", "urn:oid:1.2|PID") == expected


@pytest.mark.parametrize("value", ["Group/x", "Patient/", "Patient/bad id"])
def test_bad_references(value: str) -> None:
    with pytest.raises(InvalidQuery):
        one("patient", value)


@pytest.mark.parametrize("prefix", ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"])
def test_date_prefixes(prefix: str) -> None:
    criterion = one("started", f"{prefix}2024-01-15")
    assert criterion == DateCriterion(
        "started", prefix or "eq", datetime(2024, 1, 15, tzinfo=UTC), datetime(2024, 1, 16, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    ("value", "low", "length"),
    [
        ("2024", datetime(2024, 1, 1, tzinfo=UTC), timedelta(days=366)),
        ("2024-12", datetime(2024, 12, 1, tzinfo=UTC), timedelta(days=31)),
        ("2024-01-15T10:15", datetime(2024, 1, 15, 10, 15, tzinfo=UTC), timedelta(minutes=1)),
        ("2024-01-15T10:15:30Z", datetime(2024, 1, 15, 10, 15, 30, tzinfo=UTC), timedelta(seconds=1)),
        ("2024-01-15T10:15:30.5+01:00", datetime(2024, 1, 15, 9, 15, 30, 500000, tzinfo=UTC), timedelta(seconds=0.1)),
        ("2024-01-15T10:15:30 01:00", datetime(2024, 1, 15, 9, 15, 30, tzinfo=UTC), timedelta(seconds=1)),
    ],
)
def test_date_precision_gives_the_interval(value: str, low: datetime, length: timedelta) -> None:
    start, end = parse_date(value, None)
    assert (start, end - start) == (low, length)


def test_dates_without_offset_are_in_the_server_zone() -> None:
    start, _ = parse_date("2024-01-15T10:00", timezone(timedelta(hours=2)))
    assert start == datetime(2024, 1, 15, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", ["ap2024-01-15", "2024-13-01", "15.01.2024", "ge", "2024-01-15T25:00"])
def test_bad_dates(value: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        one("started", value)
    assert caught.value.parameter == "started"


def test_status_id_and_last_updated() -> None:
    assert one("status", "available,entered-in-error") == ValueCriterion("status", ("available", "entered-in-error"))
    assert one("_id", "1.2.3") == ValueCriterion("_id", ("1.2.3",))
    assert isinstance(one("_lastUpdated", "gt2024-01-01", "Patient"), DateCriterion)
    with pytest.raises(InvalidQuery):
        one("status", "bogus")


def test_paging_parameters() -> None:
    request = parse_search("ImagingStudy", [("_count", "5"), ("_offset", "10"), ("_format", "json")], None)
    assert (request.count, request.offset, request.criteria) == (5, 10, ())
    assert parse_search("ImagingStudy", [("_count", "999999")], None).count == MAX_COUNT
    for bad in ("-1", "x", ""):
        with pytest.raises(InvalidQuery):
            parse_search("ImagingStudy", [("_count", bad)], None)


def test_unknown_parameters_are_errors_unless_lenient() -> None:
    with pytest.raises(InvalidQuery) as caught:
        parse_search("ImagingStudy", [("bodysite", "x")], None)
    assert caught.value.parameter == "bodysite"
    with pytest.raises(InvalidQuery):
        parse_search("Patient", [("modality", "CT")], None)
    with pytest.raises(InvalidQuery):
        parse_search("ImagingStudy", [("identifier:missing", "true")], None)
    assert parse_search("ImagingStudy", [("bodysite", "x")], None, lenient=True).criteria == ()
