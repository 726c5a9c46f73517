"""QIDO-RS query parameters (PS3.18 8.3.4): every matcher kind, includefield, paging, and each way to be wrong."""

from __future__ import annotations

import pytest

from gateway.dicom.attributes import QueryLevel
from gateway.dicomweb.params import (
    EMPTY_VALUE_WARNING,
    MAX_RESULTS,
    MULTIPLE_VALUE_WARNING,
    QidoParams,
    parse_qido_params,
)
from gateway.errors import InvalidQuery
from gateway.index.queries import Match, Range, SingleValue, Universal, ValueList, Wildcard

STUDY, SERIES, IMAGE = QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE
UID_A, UID_B = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"


def parse(query: str, level: QueryLevel = STUDY) -> QidoParams:
    """Parse a literal query string (no URL decoding needed for these tests)."""
    items = [tuple(part.split("=", 1)) if "=" in part else (part, "") for part in query.split("&") if part]
    return parse_qido_params([(name, value) for name, value in items], level)


def matches(query: str, level: QueryLevel = STUDY) -> tuple[Match, ...]:
    return parse(query, level).query.matches


def rejected(query: str, level: QueryLevel = STUDY) -> InvalidQuery:
    with pytest.raises(InvalidQuery) as caught:
        parse(query, level)
    return caught.value


def test_attribute_by_keyword_or_tag_is_the_same_key() -> None:
    expected = (Match("0020000D", SingleValue(UID_A)),)
    assert matches(f"StudyInstanceUID={UID_A}") == expected
    assert matches(f"0020000D={UID_A}") == expected
    assert matches(f"0020000d={UID_A}") == expected


@pytest.mark.parametrize(
    ("query", "matcher"),
    [
        ("PatientID=GW-0001", SingleValue("GW-0001")),
        ("PatientName=Doe^Jane", SingleValue("Doe^Jane")),
        ("PatientName=doe*", Wildcard("doe*")),
        ("AccessionNumber=ACC-??-0001", Wildcard("ACC-??-0001")),
        ("PatientSex=F", SingleValue("F")),
        ("StudyDate=20240115", SingleValue("20240115")),
        ("StudyDate=20240101-", Range("20240101", None)),
        ("StudyDate=-20241231", Range(None, "20241231")),
        ("StudyDate=20240101-20240131", Range("20240101", "20240131")),
        ("StudyTime=0800-093000.5", Range("0800", "093000.5")),
        ("PatientBirthDate=19600101-19700101", Range("19600101", "19700101")),
        (f"StudyInstanceUID={UID_A},{UID_B}", ValueList((UID_A, UID_B))),
        (f"StudyInstanceUID={UID_A}&StudyInstanceUID={UID_B}", ValueList((UID_A, UID_B))),
        (f"StudyInstanceUID={UID_A}\\{UID_B}", ValueList((UID_A, UID_B))),
        ("ModalitiesInStudy=CT,MR", ValueList(("CT", "MR"))),
        ("ModalitiesInStudy=CT\\MR", ValueList(("CT", "MR"))),
        ("ModalitiesInStudy=C*", Wildcard("C*")),
        ("PatientName=*", Universal()),
    ],
)
def test_study_level_matchers(query: str, matcher: object) -> None:
    (match,) = matches(query)
    assert match.matcher == matcher


@pytest.mark.parametrize(
    ("query", "level", "matcher"),
    [
        ("SeriesNumber=2", SERIES, SingleValue("2")),
        ("SeriesDescription=*MPR*", SERIES, Wildcard("*MPR*")),
        ("PerformedProcedureStepStartDate=20160101-", SERIES, Range("20160101", None)),
        ("PerformedProcedureStepStartTime=-1200", SERIES, Range(None, "1200")),
        ("Rows=64", IMAGE, SingleValue("64")),
        ("NumberOfFrames=010", IMAGE, SingleValue("10")),
        ("AcquisitionDateTime=20240101-20240102120000", IMAGE, Range("20240101", "20240102120000")),
        ("AcquisitionDateTime=20240101120000.5+0100-", IMAGE, Range("20240101120000.5+0100", None)),
        # A DT with a negative UTC offset is one value, not a range.
        ("AcquisitionDateTime=20240101120000-0500", IMAGE, SingleValue("20240101120000-0500")),
        (f"SOPClassUID={UID_A},{UID_B}", IMAGE, ValueList((UID_A, UID_B))),
    ],
)
def test_series_and_instance_level_matchers(query: str, level: QueryLevel, matcher: object) -> None:
    (match,) = matches(query, level)
    assert match.matcher == matcher


def test_higher_level_keys_are_allowed_in_lower_level_searches() -> None:
    # PS3.18 10.6.1: study-level keys in series and instance searches are relational queries.
    found = matches("StudyDate=20240115&Modality=CT&InstanceNumber=1", IMAGE)
    assert [m.tag for m in found] == ["00080020", "00080060", "00200013"]


def test_an_empty_value_asks_the_attribute_back_without_matching() -> None:
    params = parse("PatientName=&OperatorsName=&00081030=&SeriesNumber=*")
    assert params.query.matches == ()
    assert params.includefields == {"00100010", "00081070", "00081030", "00200011"}


def test_includefield_repeated_comma_separated_and_all() -> None:
    params = parse("includefield=StudyDescription,00080060&includefield=PatientAge&includefield=00400275.00401001")
    assert params.includefields == {"00081030", "00080060", "00101010", "00400275"}
    assert params.include_all is False
    assert parse("includefield=all").include_all is True


def test_matched_keys_are_returned_too() -> None:
    assert parse("PatientID=X&StudyDate=20240101-").matched == {"00100020", "00080020"}


def test_paging_defaults_and_cap() -> None:
    assert (parse("").query.limit, parse("").query.offset) == (MAX_RESULTS, 0)
    assert (parse("limit=20&offset=40").query.limit, parse("limit=20&offset=40").query.offset) == (20, 40)
    assert parse(f"limit={MAX_RESULTS * 10}").query.limit == MAX_RESULTS  # PS3.18 8.3.4.4: the server may cap
    assert parse("limit=0").query.limit == 0


def test_fuzzymatching_and_unsupported_matching_flags() -> None:
    assert parse("fuzzymatching=true").query.fuzzy is True
    assert parse("fuzzymatching=FALSE").query.fuzzy is False
    assert parse("fuzzymatching=false&emptyvaluematching=false").warnings == ()
    assert parse("emptyvaluematching=true&multiplevaluematching=true").warnings == (
        EMPTY_VALUE_WARNING,
        MULTIPLE_VALUE_WARNING,
    )


def test_media_type_parameters_pass_through() -> None:
    assert parse("accept=application/dicom%2Bjson&charset=utf-8").query.matches == ()


@pytest.mark.parametrize(
    ("query", "level", "parameter", "reason"),
    [
        ("Foo=1", STUDY, "Foo", "unknown query parameter"),
        ("studyinstanceuid=1.2", STUDY, "studyinstanceuid", "unknown query parameter"),
        ("Limit=5", STUDY, "Limit", "unknown query parameter"),
        ("StudyDate=2024-01-01", STUDY, "StudyDate", "not a DA range"),
        ("StudyDate=20241301", STUDY, "StudyDate", "not a calendar date"),
        ("StudyDate=20240101-2024", STUDY, "StudyDate", "not a DA range"),
        ("StudyDate=-", STUDY, "StudyDate", "not a DA range"),
        ("StudyDate=2024*", STUDY, "StudyDate", "not a DA value"),
        ("StudyTime=2500", STUDY, "StudyTime", "not a TM value"),
        ("AcquisitionDateTime=2024-01-01T12", IMAGE, "AcquisitionDateTime", "not a DT range"),
        (f"StudyInstanceUID={UID_A},1.2.abc", STUDY, "StudyInstanceUID", "not a valid UID"),
        ("StudyInstanceUID=1.02", STUDY, "StudyInstanceUID", "not a valid UID"),
        (f"0020000D={UID_A},,{UID_B}", STUDY, "0020000D", "empty values or wild cards"),
        ("ModalitiesInStudy=CT,M*", STUDY, "ModalitiesInStudy", "empty values or wild cards"),
        ("PatientID=A&PatientID=B", STUDY, "PatientID", "more than once"),
        ("SeriesNumber=two", SERIES, "SeriesNumber", "not an integer"),
        ("Modality=CT", STUDY, "Modality", "series-level key"),
        ("SOPInstanceUID=1.2", SERIES, "SOPInstanceUID", "image-level key"),
        ("OperatorsName=Smith", STUDY, "OperatorsName", "not a supported matching key"),
        ("RequestAttributesSequence.ScheduledProcedureStepID=1", SERIES, "RequestAttributesSequence.", "sequence"),
        ("limit=-1", STUDY, "limit", "not an unsigned integer"),
        ("limit=", STUDY, "limit", "not an unsigned integer"),
        ("limit=1&limit=2", STUDY, "limit", "more than once"),
        ("offset=abc", STUDY, "offset", "not an unsigned integer"),
        ("fuzzymatching=yes", STUDY, "fuzzymatching", "neither true nor false"),
        ("emptyvaluematching=1", STUDY, "emptyvaluematching", "neither true nor false"),
        ("includefield=NotAKeyword", STUDY, "includefield", "not a DICOM keyword or tag"),
        ("includefield=StudyDate,,PatientID", STUDY, "includefield", "not a DICOM keyword or tag"),
    ],
)
def test_bad_parameters_are_refused_naming_the_parameter(
    query: str, level: QueryLevel, parameter: str, reason: str
) -> None:
    error = rejected(query, level)
    assert error.parameter.startswith(parameter)
    assert reason in error.reason
