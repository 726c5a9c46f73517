"""FHIR storage on SQLite and PostgreSQL: versions only on change, search per parameter and prefix, paging,
debounced study changes and push states."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydicom import Dataset
from sqlalchemy import Engine, select

from gateway.config import load_settings
from gateway.fhir.changes import LOST_AFTER, StudyChanges
from gateway.fhir.errors import PushRejected
from gateway.fhir.patient import PatientKey, patient_resource_id
from gateway.fhir.push import PushStates
from gateway.fhir.search import parse_search
from gateway.fhir.service import FhirService
from gateway.fhir.store import utc
from gateway.index.db import make_engine, migrate
from gateway.index.fhir_models import FhirStudyChange
from gateway.index.repository import IndexRepository
from gateway.indexing import IndexingService
from tests.factories import make_dataset, new_uid, to_part10_bytes
from tests.fakes import MemoryStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DCM = "http://dicom.nema.org/resources/ontology/DCM"


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class RecordingQueue:
    changed: list[tuple[str, float]] = field(default_factory=list)
    pushes: list[tuple[str, float]] = field(default_factory=list)

    def enqueue_study_changed(self, study_instance_uid: str, countdown: float) -> None:
        self.changed.append((study_instance_uid, countdown))

    def enqueue_fhir_push(self, study_instance_uid: str, countdown: float = 0.0) -> None:
        self.pushes.append((study_instance_uid, countdown))


@pytest.fixture
def engine(index_url: str) -> Engine:
    engine = make_engine(index_url)
    migrate(engine)
    return engine


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fhir(engine: Engine, clock: Clock, tmp_path: Any) -> FhirService:
    settings = load_settings(data_dir=tmp_path, public_url="http://gw.test")
    return FhirService(settings, engine, RecordingQueue(), clock=clock)


def index(engine: Engine, *datasets: Dataset) -> IndexingService:
    indexing = IndexingService(MemoryStore(), IndexRepository(engine))
    for ds in datasets:
        key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        indexing.store.put(key, to_part10_bytes(ds))
        indexing.index_object(key)
    return indexing


def test_versions_change_only_with_content(engine: Engine, fhir: FhirService, clock: Clock) -> None:
    first = make_dataset()
    study = first.StudyInstanceUID
    index(engine, first)
    assert fhir.build(study) == "created"
    v1 = fhir.store.read("ImagingStudy", study)
    assert v1["meta"] == {"versionId": "1", "lastUpdated": "2026-01-01T12:00:00.000Z"}
    clock.now += timedelta(minutes=5)
    assert fhir.build(study) == "unchanged"
    assert fhir.store.read("ImagingStudy", study)["meta"] == v1["meta"]
    index(engine, make_dataset(study_uid=study, modality="MR", SeriesNumber=2))
    assert fhir.build(study) == "updated"
    v2 = fhir.store.read("ImagingStudy", study)
    assert v2["meta"] == {"versionId": "2", "lastUpdated": "2026-01-01T12:05:00.000Z"}
    assert (v2["numberOfSeries"], v2["numberOfInstances"]) == (2, 2)
    assert fhir.store.read("ImagingStudy", study, 1)["numberOfInstances"] == 1  # vread keeps history


def test_deleted_instances_and_studies(engine: Engine, fhir: FhirService) -> None:
    a, b = make_dataset(), make_dataset(InstanceNumber=2)
    b.StudyInstanceUID = a.StudyInstanceUID
    b.SeriesInstanceUID = a.SeriesInstanceUID
    indexing = index(engine, a, b)
    study = a.StudyInstanceUID
    fhir.build(study)
    indexing.repository.delete_instances([b.SOPInstanceUID])
    assert fhir.build(study) == "updated"
    assert fhir.store.read("ImagingStudy", study)["numberOfInstances"] == 1
    indexing.repository.delete_instances([a.SOPInstanceUID])
    assert fhir.build(study) == "updated"
    gone = fhir.store.read("ImagingStudy", study)
    assert (gone["status"], gone["meta"]["versionId"], gone["numberOfInstances"]) == ("entered-in-error", "3", 1)
    assert fhir.build(study) == "unchanged"
    assert fhir.build(new_uid()) == "absent"


@pytest.fixture
def four_studies(engine: Engine, fhir: FhirService, clock: Clock) -> dict[str, str]:
    """A: CT 2024-01-10 10:15Z; B: MR+SR 2024-01-15 09:00+01:00; C: US 2024-02-01 (date only); D: CT, no date."""
    a = make_dataset("CT", StudyDate="20240110", StudyTime="101500", TimezoneOffsetFromUTC="+0000")
    a.AccessionNumber, a.PatientID = "ACC-A", "P1"
    b_attrs = {"StudyDate": "20240115", "StudyTime": "0900", "TimezoneOffsetFromUTC": "+0100", "patient_id": "P1"}
    b = make_dataset("MR", AccessionNumber="ACC-B", **b_attrs)
    b_sr = make_dataset("SR", study_uid=b.StudyInstanceUID, AccessionNumber="ACC-B", SeriesNumber=2, **b_attrs)
    c = make_dataset("US", StudyDate="20240201", AccessionNumber="ACC-C", patient_id="P2", IssuerOfPatientID="1.2.3.4")
    d = make_dataset("CT", patient_id="P3")
    del d.StudyDate, d.StudyTime, d.AccessionNumber
    index(engine, a, b, b_sr, c, d)
    names = {"A": a.StudyInstanceUID, "B": b.StudyInstanceUID, "C": c.StudyInstanceUID, "D": d.StudyInstanceUID}
    for name in "ABCD":
        fhir.build(names[name])
        clock.now += timedelta(hours=1)
    return names


def found(fhir: FhirService, *params: tuple[str, str], resource_type: str = "ImagingStudy") -> list[str]:
    total, resources = fhir.store.search(resource_type, parse_search(resource_type, list(params), None))
    assert total == len(resources)
    return [r["id"] for r in resources]


def test_search_by_identifier(fhir: FhirService, four_studies: dict[str, str]) -> None:
    s = four_studies
    assert found(fhir, ("identifier", f"urn:dicom:uid|urn:oid:{s['A']}")) == [s["A"]]
    assert found(fhir, ("identifier", "ACC-B")) == [s["B"]]
    assert found(fhir, ("identifier", "|ACC-B")) == [s["B"]]
    assert found(fhir, ("identifier", "urn:dicom:uid|")) == [s[n] for n in "ABCD"]
    assert found(fhir, ("identifier", "ACC-A,ACC-C")) == [s["A"], s["C"]]
    assert found(fhir, ("identifier", "urn:dicom:uid|ACC-A")) == []
    assert found(fhir, ("_id", f"{s['A']},{s['D']}")) == [s["A"], s["D"]]


def test_search_by_patient(fhir: FhirService, four_studies: dict[str, str]) -> None:
    s = four_studies
    p1 = patient_resource_id(PatientKey("P1", ""))
    assert found(fhir, ("patient", f"Patient/{p1}")) == [s["A"], s["B"]]
    assert found(fhir, ("subject", p1)) == [s["A"], s["B"]]
    assert found(fhir, ("subject:identifier", "P1")) == [s["A"], s["B"]]
    assert found(fhir, ("patient:identifier", "|P1")) == [s["A"], s["B"]]
    assert found(fhir, ("subject:identifier", "urn:oid:1.2.3.4|P2")) == [s["C"]]
    assert found(fhir, ("identifier", "urn:oid:1.2.3.4|P2"), resource_type="Patient") == [
        patient_resource_id(PatientKey("P2", "1.2.3.4"))
    ]
    assert len(found(fhir, ("identifier", "P1"), resource_type="Patient")) == 1


def test_search_by_modality_and_status(
    engine: Engine, fhir: FhirService, four_studies: dict[str, str], clock: Clock
) -> None:
    s = four_studies
    assert found(fhir, ("modality", "CT")) == [s["A"], s["D"]]
    assert found(fhir, ("modality", f"{DCM}|SR")) == [s["B"]]
    assert found(fhir, ("modality", "MR,US")) == [s["B"], s["C"]]
    assert found(fhir, ("status", "available")) == [s[n] for n in "ABCD"]
    sop = fhir.store.read("ImagingStudy", s["D"])["series"][0]["instance"][0]["uid"]
    IndexRepository(engine).delete_instances([sop])
    fhir.build(s["D"])
    assert found(fhir, ("status", "entered-in-error")) == [s["D"]]
    assert found(fhir, ("modality", "CT"), ("status", "available")) == [s["A"]]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-15", "B"),
        ("eq2024-01-15", "B"),
        ("ne2024-01-15", "AC"),
        ("ge2024-01-15", "BC"),
        ("gt2024-01-15", "C"),
        ("le2024-01-15", "AB"),
        ("lt2024-01-15", "A"),
        ("sa2024-01-15", "C"),
        ("eb2024-01-15", "A"),
        ("2024-01-15T09:00:00+01:00", "B"),
        ("ge2024-01-10T10:15:00Z", "ABC"),
        ("gt2024-01-10T10:15:00Z", "BC"),
        ("2024-02", "C"),
        ("2024", "ABC"),
    ],
)
def test_search_by_started(fhir: FhirService, four_studies: dict[str, str], value: str, expected: str) -> None:
    assert found(fhir, ("started", value)) == [four_studies[n] for n in expected]


def test_search_started_range_and_last_updated(fhir: FhirService, four_studies: dict[str, str]) -> None:
    s = four_studies
    assert found(fhir, ("started", "ge2024-01-11"), ("started", "lt2024-02-01")) == [s["B"]]
    # Built one hour apart from T0: A at 12:00, B 13:00, C 14:00, D 15:00 (UTC).
    assert found(fhir, ("_lastUpdated", "ge2026-01-01T13:30:00Z")) == [s["C"], s["D"]]
    assert found(fhir, ("_lastUpdated", "lt2026-01-01T13:30:00Z")) == [s["A"], s["B"]]
    assert found(fhir, ("_lastUpdated", "2026-01-01T13:00:00Z")) == [s["B"]]
    assert found(fhir, ("_lastUpdated", "2026-01-01")) == [s[n] for n in "ABCD"]


def test_paging(fhir: FhirService, four_studies: dict[str, str]) -> None:
    pages = []
    for offset in (0, 3):
        total, resources = fhir.store.search(
            "ImagingStudy", parse_search("ImagingStudy", [("_count", "3"), ("_offset", str(offset))], None)
        )
        assert total == 4
        pages.append([r["id"] for r in resources])
    assert pages == [[four_studies[n] for n in "ABC"], [four_studies["D"]]]
    total, resources = fhir.store.search("ImagingStudy", parse_search("ImagingStudy", [("_count", "0")], None))
    assert (total, resources) == (4, [])


def test_debounce_schedules_once_and_waits_for_quiet(engine: Engine) -> None:
    changes = StudyChanges(engine, debounce=10)
    scheduled: list[float] = []
    study = new_uid()
    changes.note(study, T0, scheduled.append)
    changes.note(study, T0 + timedelta(seconds=4), scheduled.append)
    assert scheduled == [10.0]  # one task for a burst
    # The task runs at T0+10 s: the study changed at +4 s, so it waits until +14 s.
    assert changes.take(study, T0 + timedelta(seconds=10), scheduled.append) is False
    assert scheduled == [10.0, 4.0]
    # A stray duplicate running before that due time ends without scheduling more.
    assert changes.take(study, T0 + timedelta(seconds=11), scheduled.append) is False
    assert scheduled == [10.0, 4.0]
    assert changes.take(study, T0 + timedelta(seconds=14), scheduled.append) is True
    assert changes.take(study, T0 + timedelta(seconds=15), scheduled.append) is True  # nothing noted: harmless
    changes.note(study, T0 + timedelta(seconds=20), scheduled.append)
    assert scheduled == [10.0, 4.0, 10.0]  # a change after the build schedules a new one
    changes.note(study, T0 + timedelta(seconds=20) + LOST_AFTER + timedelta(seconds=11), scheduled.append)
    assert len(scheduled) == 4  # a task long overdue is presumed lost


def test_long_debounce_waits_in_steps_below_the_visibility_timeout(engine: Engine) -> None:
    changes = StudyChanges(engine, debounce=100, max_countdown=30)
    scheduled: list[float] = []
    study = new_uid()
    changes.note(study, T0, scheduled.append)
    for elapsed in (30, 60, 90):
        assert changes.take(study, T0 + timedelta(seconds=elapsed), scheduled.append) is False
    assert scheduled == [30.0, 30.0, 30.0, 10.0]
    assert changes.take(study, T0 + timedelta(seconds=100), scheduled.append) is True


def test_broker_down_while_noting_records_nothing(engine: Engine) -> None:
    changes = StudyChanges(engine, debounce=10)
    study = new_uid()

    def down(countdown: float) -> None:
        raise RuntimeError("broker down")

    with pytest.raises(RuntimeError):
        changes.note(study, T0, down)
    scheduled: list[float] = []
    changes.note(study, T0 + timedelta(seconds=1), scheduled.append)
    assert scheduled == [10.0]


def test_push_states(engine: Engine) -> None:
    states = PushStates(engine)
    study = new_uid()
    rejected = PushRejected("FHIR server answered 400: no", 400, '{"resourceType":"OperationOutcome","issue":[]}')
    states.record("ImagingStudy", study, 1, "failed", T0, rejected)
    state = states.get("ImagingStudy", study)
    assert state is not None
    assert (state.status, state.attempts, state.http_status, state.first_failure_at) == ("failed", 1, 400, T0)
    assert state.as_json()["outcome"] == {"resourceType": "OperationOutcome", "issue": []}
    states.record("ImagingStudy", study, 2, "sent", T0 + timedelta(minutes=1), http_status=200)
    state = states.get("ImagingStudy", study)
    assert state is not None
    assert (state.status, state.pushed_version, state.attempts, state.first_failure_at) == ("sent", 2, 0, None)
    assert [s.resource_id for s in states.list("sent")] == [study] and states.list("failed") == []


@pytest.mark.parametrize(("debounce", "noted_twice"), [(10.0, False), (0.0, True)])
def test_a_study_noted_within_the_window_is_not_noted_again(
    engine: Engine, clock: Clock, tmp_path: Any, debounce: float, noted_twice: bool
) -> None:
    settings = load_settings(data_dir=tmp_path, fhir_debounce_seconds=debounce)
    fhir = FhirService(settings, engine, RecordingQueue(), clock=clock)
    study = new_uid()
    fhir.note_change(study)
    clock.now = T0 + timedelta(milliseconds=300)
    fhir.note_change(study)  # within a second of the first note: skipped unless there is no debounce
    with engine.connect() as connection:
        changed_at = connection.execute(
            select(FhirStudyChange.changed_at).where(FhirStudyChange.study_instance_uid == study)
        ).scalar_one()
    assert utc(changed_at) == (clock.now if noted_twice else T0)
