"""Read one study's rows from the index into the snapshot the ImagingStudy mapping works on."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from gateway.errors import IndexUnavailable
from gateway.fhir.imagingstudy import InstanceSnapshot, SeriesSnapshot, StudySnapshot
from gateway.fhir.patient import PatientKey
from gateway.index.models import Instance, Series, Study

# The instance attributes the mapping reads per instance (ImagingStudy.series.instance.title); the full header of
# the first instance of each series stands in for series- and study-level attributes the index does not keep.
_INSTANCE_TAGS = frozenset({"00420010", "0040A043", "00700080"})


def _header(document: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(document or "{}")
    except orjson.JSONDecodeError:
        return {}  # tolerant when we read: a broken header only loses optional attributes
    return parsed if isinstance(parsed, dict) else {}


def load_study(sessions: sessionmaker[Session], study_instance_uid: str) -> StudySnapshot | None:
    """Return the study with its series and instances, or None when the index has no instance of it.

    Series are ordered by SeriesNumber, instances by InstanceNumber (missing numbers last, then by UID).
    Raises IndexUnavailable when the database cannot be reached.
    """
    try:
        with sessions() as session:
            study = session.execute(
                select(Study).where(Study.study_instance_uid == study_instance_uid)
            ).scalar_one_or_none()
            if study is None:
                return None
            series_rows = session.execute(
                select(Series)
                .where(Series.study_pk == study.pk)
                .order_by(Series.series_number.is_(None), Series.series_number, Series.series_instance_uid)
            ).scalars()
            series_list = list(series_rows)
            instance_rows = session.execute(
                select(
                    Instance.series_pk,
                    Instance.sop_instance_uid,
                    Instance.sop_class_uid,
                    Instance.instance_number,
                    Instance.metadata_json,
                )
                .where(Instance.series_pk.in_([s.pk for s in series_list]))
                .order_by(Instance.instance_number.is_(None), Instance.instance_number, Instance.sop_instance_uid)
            ).all()
            patient = PatientKey(study.patient.patient_id, study.patient.issuer_of_patient_id)
            study_json = dict(study.study_json or {})
    except OperationalError as exc:
        raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc

    by_series: dict[int, list[InstanceSnapshot]] = {}
    first_header: dict[int, dict[str, Any]] = {}
    for series_pk, sop_uid, sop_class, number, document in instance_rows:
        header = _header(document)
        first_header.setdefault(series_pk, header)
        subset = {tag: value for tag, value in header.items() if tag in _INSTANCE_TAGS}
        by_series.setdefault(series_pk, []).append(InstanceSnapshot(sop_uid, sop_class, number, subset))
    series: list[SeriesSnapshot] = []
    for row in series_list:
        instances = by_series.get(row.pk)
        if not instances:
            continue  # a series whose instances all moved or were deleted is not part of the study any more
        attributes = {**first_header[row.pk], **(row.series_json or {})}
        series.append(
            SeriesSnapshot(row.series_instance_uid, row.modality, row.series_number, attributes, tuple(instances))
        )
    if not series:
        return None
    first = next(row.pk for row in series_list if row.pk in first_header)
    attributes = {**first_header[first], **study_json}
    return StudySnapshot(study_instance_uid, patient, attributes, tuple(series))
