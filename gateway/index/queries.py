"""Read side of the index: study listings for QIDO-RS (matching grows here, shared with C-FIND)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.index.models import Instance, Patient, Series, Study


@dataclass(frozen=True)
class StudyRow:
    """One study with its patient, as QIDO-RS returns it."""

    study: Study
    patient: Patient


def _studies_query() -> Select[Study, Patient]:
    # Stable order: newest study date first, then the UID as a tie breaker.
    return (
        select(Study, Patient)
        .join(Patient, Study.patient_pk == Patient.pk)
        .where(Study.number_of_instances > 0)
        .order_by(Study.study_date.desc().nulls_last(), Study.study_instance_uid)
    )


def list_studies(sessions: sessionmaker[Session], limit: int | None = None, offset: int = 0) -> list[StudyRow]:
    """Return studies with at least one instance, in a stable order, paged by limit/offset."""
    query = _studies_query().offset(offset)
    if limit is not None:
        query = query.limit(limit)
    with sessions() as session:
        return [StudyRow(row[0], row[1]) for row in session.execute(query).all()]


def count_studies(sessions: sessionmaker[Session]) -> int:
    """Return how many studies have at least one instance."""
    with sessions() as session:
        return int(session.execute(select(func.count(Study.pk)).where(Study.number_of_instances > 0)).scalar_one())


def instance_counts(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """Return totals of studies, series and instances (for /metrics)."""
    with sessions() as session:
        return {
            "studies": session.execute(select(func.count(Study.pk))).scalar_one(),
            "series": session.execute(select(func.count(Series.pk))).scalar_one(),
            "instances": session.execute(select(func.count(Instance.pk))).scalar_one(),
        }
