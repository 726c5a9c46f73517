"""Attribute matching (PS3.4 C.2.2.2) on SQLite and PostgreSQL, with expectations computed from the files.

The index is filled from the testdata corpus, pydicom's bundled files and a few factory instances;
what each query should find is worked out here with pydicom and plain Python (fnmatch, str.upper),
never taken from the gateway's own output.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator

import pytest
from alembic import command
from alembic.config import Config
from pydicom import Dataset, dcmread
from pydicom.datadict import tag_for_keyword
from sqlalchemy import Engine, text

from gateway.dicom.attributes import QueryLevel
from gateway.index.db import MIGRATIONS_DIR, make_engine, migrate
from gateway.index.queries import (
    Match,
    Matcher,
    Query,
    Range,
    SingleValue,
    Universal,
    ValueList,
    Wildcard,
    search,
)
from gateway.index.repository import IndexRepository
from gateway.indexing import IndexingService
from testdata.generate import generate_corpus, pydicom_test_files
from tests.factories import make_dataset, new_uid, to_part10_bytes
from tests.fakes import MemoryStore

STUDY, SERIES, IMAGE = QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE
Predicate = Callable[[Dataset], bool]


def _extra_instances() -> list[Dataset]:
    """Values the corpus lacks: AcquisitionDateTime, SQL wild card characters, a lower-case name."""
    study = new_uid()
    extras = [
        make_dataset(study_uid=study, patient_id="SQL-1", patient_name="o'brien^conan", StudyDescription="100%_done"),
        make_dataset(study_uid=study, patient_id="SQL-1", patient_name="o'brien^conan", StudyDescription="100%_done"),
        make_dataset(patient_id="SQL-2", StudyDescription="100xydone", StudyDate="20230505"),
        make_dataset(patient_id="SQL-3", StudyDescription="[draft] head", StudyDate="20230506"),
    ]
    extras[0].AcquisitionDateTime = "20240101120000"
    extras[1].AcquisitionDateTime = "20240102083000.5+0100"
    extras[1].SeriesInstanceUID = extras[0].SeriesInstanceUID
    extras[1].InstanceNumber = 2
    return extras


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Dataset, bytes]]:
    """Every instance of the test index: its header (the source of expectations) and its Part 10 bytes."""
    paths = generate_corpus(tmp_path_factory.mktemp("corpus")) + pydicom_test_files()
    items = [(dcmread(path, stop_before_pixels=True), path.read_bytes()) for path in paths]
    items += [(ds, to_part10_bytes(ds)) for ds in _extra_instances()]
    return items


@pytest.fixture
def engine(index_url: str) -> Engine:
    engine = make_engine(index_url)
    migrate(engine)
    return engine


@pytest.fixture
def repository(engine: Engine, corpus: list[tuple[Dataset, bytes]]) -> Iterator[IndexRepository]:
    indexing = IndexingService(MemoryStore(), IndexRepository(engine))
    for ds, data in corpus:
        key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        indexing.store.put(key, data)
        indexing.index_object(key)
    yield indexing.repository
    engine.dispose()


# --- the reference: plain Python over pydicom datasets ---------------------------------------------------


def text_of(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def name_groups(ds: Dataset, keyword: str) -> list[str]:
    """A person name's component groups, upper case, trailing "^" dropped (PS3.5 6.2)."""
    return [group.rstrip("^") for group in text_of(ds, keyword).upper().split("=") if group.rstrip("^")]


def name_components(ds: Dataset, keyword: str) -> list[str]:
    return [word for group in name_groups(ds, keyword) for part in group.split("^") for word in part.split(" ")]


def uid_of(level: QueryLevel, ds: Dataset) -> str:
    return str({STUDY: ds.StudyInstanceUID, SERIES: ds.SeriesInstanceUID, IMAGE: ds.SOPInstanceUID}[level])


def expected(corpus: list[tuple[Dataset, bytes]], level: QueryLevel, predicate: Predicate) -> set[str]:
    # A study or series matches when one of its instances does (their study/series attributes agree).
    return {uid_of(level, ds) for ds, _ in corpus if predicate(ds)}


def found(repository: IndexRepository, level: QueryLevel, *matches: Match, fuzzy: bool = False) -> set[str]:
    rows = search(repository.sessions, Query(level, matches, fuzzy=fuzzy)).rows
    if level is STUDY:
        return {row.study.study_instance_uid for row in rows}
    if level is SERIES:
        return {row.series.series_instance_uid for row in rows if row.series}
    return {row.instance.sop_instance_uid for row in rows if row.instance}


def in_range(value: str, start: str | None, end: str | None) -> bool:
    return bool(value) and (start is None or value >= start) and (end is None or value[: len(end)] <= end)


Case = tuple[str, Matcher, Predicate]


def NOTHING(ds: Dataset) -> bool:  # upper case: reads as a constant in the case tables
    """The predicate of a case that must find nothing (every other case must find something)."""
    return False


def check(
    repository: IndexRepository, corpus: list[tuple[Dataset, bytes]], level: QueryLevel, cases: list[Case]
) -> None:
    for keyword, matcher, predicate in cases:
        tag = f"{tag_for_keyword(keyword):08X}"
        want = expected(corpus, level, predicate)
        assert want or predicate is NOTHING, f"{keyword} {matcher} finds nothing in the corpus: a vacuous case"
        got = found(repository, level, Match(tag, matcher))
        assert got == want, f"{level} {keyword} {matcher}: {len(got)} found, {len(want)} expected"


# --- study level ---------------------------------------------------------------------------------------


def test_study_level_matching(repository: IndexRepository, corpus: list[tuple[Dataset, bytes]]) -> None:
    ct = next(str(ds.StudyInstanceUID) for ds, _ in corpus if ds.get("Modality") == "CT")
    mr = next(str(ds.StudyInstanceUID) for ds, _ in corpus if ds.get("Modality") == "MR")
    unknown = new_uid()
    cases: list[Case] = [
        # single value, case-sensitive except PN (PS3.4 C.2.2.2.1)
        ("PatientID", SingleValue("GW-0002"), lambda ds: text_of(ds, "PatientID") == "GW-0002"),
        ("StudyDescription", SingleValue("ct thorax mit km"), NOTHING),
        ("PatientSex", SingleValue("F"), lambda ds: text_of(ds, "PatientSex") == "F"),
        ("StudyDate", SingleValue("20240115"), lambda ds: text_of(ds, "StudyDate") == "20240115"),
        # wild cards (PS3.4 C.2.2.2.4), case-sensitive for non-PN VRs, SQL wild cards taken literally
        (
            "AccessionNumber",
            Wildcard("ACC-??-000?"),
            lambda ds: fnmatch.fnmatchcase(text_of(ds, "AccessionNumber"), "ACC-??-000?"),
        ),
        ("StudyDescription", Wildcard("*Brain*"), lambda ds: "Brain" in text_of(ds, "StudyDescription")),
        ("StudyDescription", Wildcard("ct*"), NOTHING),
        ("StudyDescription", Wildcard("100%_*"), lambda ds: text_of(ds, "StudyDescription").startswith("100%_")),
        ("StudyDescription", Wildcard("[draft]*"), lambda ds: text_of(ds, "StudyDescription").startswith("[draft]")),
        # PN: case-insensitive, trailing delimiters insignificant, any component group
        ("PatientName", SingleValue("müller^jürgen"), lambda ds: "MÜLLER^JÜRGEN" in name_groups(ds, "PatientName")),
        (
            "PatientName",
            SingleValue("SMITH^ANNA^MARIA^DR."),
            lambda ds: "SMITH^ANNA^MARIA^DR." in name_groups(ds, "PatientName"),
        ),
        ("PatientName", SingleValue("山田^太郎"), lambda ds: "山田^太郎" in name_groups(ds, "PatientName")),
        ("PatientName", Wildcard("smi*"), lambda ds: any(g.startswith("SMI") for g in name_groups(ds, "PatientName"))),
        ("PatientName", Wildcard("O'BRIEN^CONA?"), lambda ds: "O'BRIEN^CONAN" in name_groups(ds, "PatientName")),
        (
            "ReferringPhysicianName",
            SingleValue("house^gregory"),
            lambda ds: "HOUSE^GREGORY" in name_groups(ds, "ReferringPhysicianName"),
        ),
        # ranges (PS3.4 C.2.2.2.5)
        (
            "StudyDate",
            Range("20240101", "20240331"),
            lambda ds: in_range(text_of(ds, "StudyDate"), "20240101", "20240331"),
        ),
        ("StudyDate", Range(None, "20040826"), lambda ds: in_range(text_of(ds, "StudyDate"), None, "20040826")),
        ("StudyDate", Range("20241231", None), lambda ds: in_range(text_of(ds, "StudyDate"), "20241231", None)),
        ("StudyTime", Range("080000", "090000"), lambda ds: in_range(text_of(ds, "StudyTime"), "080000", "090000")),
        ("StudyTime", Range(None, "0730"), lambda ds: in_range(text_of(ds, "StudyTime"), None, "0730")),
        (
            "PatientBirthDate",
            Range("19600101", "19700101"),
            lambda ds: in_range(text_of(ds, "PatientBirthDate"), "19600101", "19700101"),
        ),
        # UID lists (PS3.4 C.2.2.2.2)
        ("StudyInstanceUID", ValueList((ct, mr, unknown)), lambda ds: ds.StudyInstanceUID in (ct, mr)),
        ("StudyInstanceUID", SingleValue(unknown), NOTHING),
        # ModalitiesInStudy: a study matches when any of its series does
        ("ModalitiesInStudy", SingleValue("OT"), lambda ds: text_of(ds, "Modality") == "OT"),
        ("ModalitiesInStudy", ValueList(("MR", "NM")), lambda ds: text_of(ds, "Modality") in ("MR", "NM")),
        ("ModalitiesInStudy", Wildcard("R*"), lambda ds: text_of(ds, "Modality").startswith("R")),
        # universal (PS3.4 C.2.2.2.3): everything, also entities without a value
        ("PatientName", Universal(), lambda ds: True),
        ("AccessionNumber", Universal(), lambda ds: True),
    ]
    check(repository, corpus, STUDY, cases)


def test_fuzzy_person_name_matching_is_prefix_matching_per_component(
    repository: IndexRepository, corpus: list[tuple[Dataset, bytes]]
) -> None:
    # Declared in docs/conformance.md: every component of the key starts some component of the name.
    for key in ("jür", "MAR", "smi^ann", "Ann Smith", "taro", "やまだ", "o'b^co"):
        terms = [t for t in key.upper().replace("^", " ").split(" ") if t]
        want = expected(
            corpus,
            STUDY,
            lambda ds, terms=terms: (
                bool(terms)  # type: ignore[misc]
                and all(any(c.startswith(t) for c in name_components(ds, "PatientName")) for t in terms)
            ),
        )
        assert want, key  # each key finds something in the corpus
        assert found(repository, STUDY, Match("00100010", SingleValue(key)), fuzzy=True) == want, key
    # Without fuzzymatching, a component prefix is no match.
    assert found(repository, STUDY, Match("00100010", SingleValue("jür"))) == set()


# --- series and instance level ------------------------------------------------------------------------


def test_series_level_matching(repository: IndexRepository, corpus: list[tuple[Dataset, bytes]]) -> None:
    series_uids = sorted({str(ds.SeriesInstanceUID) for ds, _ in corpus})[:2]
    cases: list[Case] = [
        ("Modality", SingleValue("CT"), lambda ds: text_of(ds, "Modality") == "CT"),
        ("Modality", Wildcard("O?"), lambda ds: fnmatch.fnmatchcase(text_of(ds, "Modality"), "O?")),
        ("SeriesDescription", Wildcard("*MPR*"), lambda ds: "MPR" in text_of(ds, "SeriesDescription")),
        ("SeriesDescription", Wildcard("*mpr*"), NOTHING),
        ("SeriesNumber", SingleValue("2"), lambda ds: text_of(ds, "SeriesNumber") == "2"),
        ("BodyPartExamined", SingleValue("CHEST"), lambda ds: text_of(ds, "BodyPartExamined") == "CHEST"),
        ("SeriesInstanceUID", ValueList(tuple(series_uids)), lambda ds: ds.SeriesInstanceUID in series_uids),
        (
            "PerformedProcedureStepStartDate",
            Range("20160101", None),
            lambda ds: in_range(text_of(ds, "PerformedProcedureStepStartDate"), "20160101", None),
        ),
        # study-level keys in a series search (relational)
        ("PatientName", Wildcard("*ANNA*"), lambda ds: any("ANNA" in g for g in name_groups(ds, "PatientName"))),
        (
            "StudyDate",
            Range("20240101", "20241231"),
            lambda ds: in_range(text_of(ds, "StudyDate"), "20240101", "20241231"),
        ),
        ("Modality", Universal(), lambda ds: True),
    ]
    check(repository, corpus, SERIES, cases)


def test_instance_level_matching(repository: IndexRepository, corpus: list[tuple[Dataset, bytes]]) -> None:
    ct_class, mr_class = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
    one = str(corpus[3][0].SOPInstanceUID)
    cases: list[Case] = [
        ("SOPClassUID", ValueList((ct_class, mr_class)), lambda ds: ds.SOPClassUID in (ct_class, mr_class)),
        ("SOPInstanceUID", SingleValue(one), lambda ds: ds.SOPInstanceUID == one),
        ("InstanceNumber", SingleValue("2"), lambda ds: text_of(ds, "InstanceNumber") == "2"),
        ("Rows", SingleValue("64"), lambda ds: text_of(ds, "Rows") == "64"),
        ("Columns", SingleValue("48"), lambda ds: text_of(ds, "Columns") == "48"),
        ("NumberOfFrames", SingleValue("10"), lambda ds: text_of(ds, "NumberOfFrames") == "10"),
        # DT ranges: a bound is a prefix ("20240101" is the whole day); UTC offsets are not applied
        (
            "AcquisitionDateTime",
            Range("20240101", "20240101"),
            lambda ds: text_of(ds, "AcquisitionDateTime").startswith("20240101"),
        ),
        ("AcquisitionDateTime", Range("20240102", None), lambda ds: text_of(ds, "AcquisitionDateTime") >= "20240102"),
        (
            "AcquisitionDateTime",
            Range(None, "2024010112"),
            lambda ds: in_range(text_of(ds, "AcquisitionDateTime"), None, "2024010112"),
        ),
        (
            "AcquisitionDateTime",
            SingleValue("20240101120000"),
            lambda ds: text_of(ds, "AcquisitionDateTime") == "20240101120000",
        ),
        # series- and study-level keys in an instance search
        ("Modality", SingleValue("US"), lambda ds: text_of(ds, "Modality") == "US"),
        ("PatientID", Wildcard("GW-*"), lambda ds: text_of(ds, "PatientID").startswith("GW-")),
        ("StudyTime", Range("2359", None), lambda ds: in_range(text_of(ds, "StudyTime"), "2359", None)),
        ("SOPClassUID", Universal(), lambda ds: True),
    ]
    check(repository, corpus, IMAGE, cases)


def test_keys_combine_with_and(repository: IndexRepository, corpus: list[tuple[Dataset, bytes]]) -> None:
    want = expected(
        corpus,
        SERIES,
        lambda ds: text_of(ds, "StudyDate") == "20240115" and text_of(ds, "SeriesDescription").startswith("Axial"),
    )
    assert len(want) == 1
    assert (
        found(repository, SERIES, Match("00080020", SingleValue("20240115")), Match("0008103E", Wildcard("Axial*")))
        == want
    )


def test_a_key_below_the_query_level_is_refused(repository: IndexRepository) -> None:
    with pytest.raises(ValueError, match="not a matching key at STUDY level"):
        search(repository.sessions, Query(STUDY, (Match("00080060", SingleValue("CT")),)))


# --- order and paging ---------------------------------------------------------------------------------


def test_results_are_in_a_stable_order_and_page_without_gaps(
    repository: IndexRepository, corpus: list[tuple[Dataset, bytes]]
) -> None:
    def study_key(ds: Dataset) -> tuple[bool, int, str]:
        date = text_of(ds, "StudyDate")
        return (not date, -int(date) if date else 0, str(ds.StudyInstanceUID))

    def number(ds: Dataset, keyword: str) -> tuple[bool, int]:
        value = text_of(ds, keyword)
        return (not value, int(value) if value else 0)

    headers = [ds for ds, _ in corpus]
    studies = list(dict.fromkeys(str(ds.StudyInstanceUID) for ds in sorted(headers, key=study_key)))
    instances = [
        str(ds.SOPInstanceUID)
        for ds in sorted(
            headers,
            key=lambda ds: (
                *study_key(ds),
                *number(ds, "SeriesNumber"),
                str(ds.SeriesInstanceUID),
                *number(ds, "InstanceNumber"),
                str(ds.SOPInstanceUID),
            ),
        )
    ]
    everything = search(repository.sessions, Query(STUDY))
    assert [row.study.study_instance_uid for row in everything.rows] == studies and not everything.more
    pages, offset = [], 0
    while True:
        page = search(repository.sessions, Query(IMAGE, limit=4, offset=offset))
        pages += [row.instance.sop_instance_uid for row in page.rows if row.instance]
        offset += 4
        if not page.more:
            break
    assert pages == instances
    assert search(repository.sessions, Query(IMAGE, limit=len(instances))).more is False
    assert search(repository.sessions, Query(IMAGE, offset=len(instances))).rows == []


# --- migration 0002 fills its columns for rows indexed before it ---------------------------------------


def test_migration_backfills_matching_columns(index_url: str) -> None:
    engine = make_engine(index_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(
            text(
                "INSERT INTO patients (pk, patient_id, issuer_of_patient_id, patient_name) "
                "VALUES (1, 'P', '', 'Müller^Jürgen^^=ミュラー')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO studies (pk, study_instance_uid, patient_pk, referring_physician_name, "
                "modalities_in_study, number_of_series, number_of_instances, study_json) "
                "VALUES (1, '1.2.3', 1, 'house^gregory^', 'CT', 1, 1, '{}')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO series (pk, series_instance_uid, study_pk, number_of_instances, series_json) "
                "VALUES (1, '1.2.3.4', 1, 1, '{}')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO instances (pk, sop_instance_uid, series_pk, sop_class_uid, transfer_syntax_uid, "
                "object_key, size, metadata_json) VALUES (1, '1.2.3.4.5', 1, '1.2', '1.2.840.10008.1.2.1', 'k', 1, "
                """'{"0008002A": {"vr": "DT", "Value": ["20240101120000"]}}')"""
            )
        )
    migrate(engine)
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT p.patient_name_upper, s.referring_physician_name_upper, i.acquisition_date_time "
                "FROM patients p, studies s, instances i"
            )
        ).one()
    engine.dispose()
    assert tuple(row) == ("MÜLLER^JÜRGEN=ミュラー", "HOUSE^GREGORY", "20240101120000")
