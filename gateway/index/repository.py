"""Idempotent writes to the index: instance upserts that keep study/series counts right under concurrency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicom.attributes import InstanceAttributes, normalize_person_name
from gateway.errors import IndexUnavailable
from gateway.index.db import make_session_factory
from gateway.index.models import DeadLetter, Instance, Patient, Series, Study


@dataclass(frozen=True)
class InstanceRecord:
    """Everything the index stores for one instance, as produced by the indexing service."""

    attributes: InstanceAttributes
    object_key: str
    size: int
    transfer_syntax_uid: str
    metadata_json: str
    frame_offsets: list[list[list[int]]] | None
    study_json: dict[str, Any]
    series_json: dict[str, Any]


_PATIENT_FIELDS = ("patient_name", "patient_birth_date", "patient_sex")
_STUDY_FIELDS = (
    "study_date",
    "study_time",
    "accession_number",
    "referring_physician_name",
    "study_id",
    "study_description",
)
_SERIES_FIELDS = (
    "modality",
    "series_number",
    "series_description",
    "performed_procedure_step_start_date",
    "performed_procedure_step_start_time",
    "body_part_examined",
)


class IndexRepository:
    """The index's write side (and the few reads the write side needs)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions: sessionmaker[Session] = make_session_factory(engine)
        self._postgres = engine.dialect.name == "postgresql"

    def _insert(self, model: type[Any]) -> Any:
        return pg_insert(model) if self._postgres else sqlite_insert(model)

    def _ensure(self, session: Session, model: type[Any], key: dict[str, Any], values: dict[str, Any]) -> int:
        """Insert the row unless it exists (race-free), update its attributes, lock it, return its pk."""
        stmt = self._insert(model).values(**key, **values).on_conflict_do_nothing(index_elements=list(key))
        session.execute(stmt)
        query = select(model.pk).filter_by(**key)
        if self._postgres:
            query = query.with_for_update()
        pk: int = session.execute(query).scalar_one()
        if values:
            session.execute(update(model).where(model.pk == pk).values(**values))
        return pk

    def upsert_instance(self, record: InstanceRecord) -> bool:
        """Insert or update one instance and recount its series and study; return True if it was new.

        Raises IndexUnavailable when the database cannot be reached.
        """
        attrs = asdict(record.attributes)
        try:
            with self.sessions.begin() as session:
                # The first statement writes, so SQLite takes its write lock at once (no read-to-write upgrade).
                patient_pk = self._ensure(
                    session,
                    Patient,
                    {"patient_id": attrs["patient_id"], "issuer_of_patient_id": attrs["issuer_of_patient_id"]},
                    {
                        **{f: attrs[f] for f in _PATIENT_FIELDS},
                        "patient_name_upper": normalize_person_name(attrs["patient_name"]),
                    },
                )
                # Locking the study row serializes concurrent writers of one study, so recounts see each other.
                study_pk = self._ensure(
                    session,
                    Study,
                    {"study_instance_uid": attrs["study_instance_uid"]},
                    {
                        "patient_pk": patient_pk,
                        "study_json": record.study_json,
                        **{f: attrs[f] for f in _STUDY_FIELDS},
                        "referring_physician_name_upper": normalize_person_name(attrs["referring_physician_name"]),
                    },
                )
                series_pk = self._ensure(
                    session,
                    Series,
                    {"series_instance_uid": attrs["series_instance_uid"]},
                    {"study_pk": study_pk, "series_json": record.series_json, **{f: attrs[f] for f in _SERIES_FIELDS}},
                )
                values = {
                    "series_pk": series_pk,
                    "sop_class_uid": attrs["sop_class_uid"],
                    "instance_number": attrs["instance_number"],
                    "rows": attrs["rows"],
                    "columns": attrs["columns"],
                    "number_of_frames": attrs["number_of_frames"],
                    "acquisition_date_time": attrs["acquisition_date_time"],
                    "transfer_syntax_uid": record.transfer_syntax_uid,
                    "object_key": record.object_key,
                    "size": record.size,
                    "metadata_json": record.metadata_json,
                    "frame_offsets": record.frame_offsets,
                    "indexed_at": func.now(),
                }
                previous = session.execute(
                    select(Instance.series_pk).where(Instance.sop_instance_uid == attrs["sop_instance_uid"])
                ).scalar_one_or_none()
                if previous is None:
                    session.execute(insert(Instance).values(sop_instance_uid=attrs["sop_instance_uid"], **values))
                else:
                    session.execute(
                        update(Instance).where(Instance.sop_instance_uid == attrs["sop_instance_uid"]).values(**values)
                    )
                self._recount(session, series_pk, study_pk)
                if previous is not None and previous != series_pk:
                    old_study = session.execute(select(Series.study_pk).where(Series.pk == previous)).scalar_one()
                    self._recount(session, previous, old_study)
                return previous is None
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc

    @staticmethod
    def _recount(session: Session, series_pk: int, study_pk: int) -> None:
        session.execute(
            update(Series)
            .where(Series.pk == series_pk)
            .values(
                number_of_instances=select(func.count(Instance.pk))
                .where(Instance.series_pk == series_pk)
                .scalar_subquery()
            )
        )
        rows = session.execute(
            select(Series.modality, func.count(Instance.pk))
            .join(Instance, Instance.series_pk == Series.pk)
            .where(Series.study_pk == study_pk)
            .group_by(Series.pk, Series.modality)
        ).all()
        modalities = sorted({m for m, _ in rows if m})
        session.execute(
            update(Study)
            .where(Study.pk == study_pk)
            .values(
                number_of_series=len(rows),
                number_of_instances=sum(count for _, count in rows),
                modalities_in_study="\\".join(modalities),
                updated_at=func.now(),
            )
        )

    def delete_instances(self, sop_instance_uids: Sequence[str]) -> None:
        """Remove instances and recount; series, studies and patients left empty are removed too.

        Raises IndexUnavailable when the database cannot be reached.
        """
        try:
            with self.sessions.begin() as session:
                touched: set[tuple[int, int]] = set()
                for start in range(0, len(sop_instance_uids), 500):  # stay under SQL parameter limits
                    chunk = list(sop_instance_uids[start : start + 500])
                    rows = session.execute(
                        select(Instance.pk, Instance.series_pk, Series.study_pk)
                        .join(Series, Instance.series_pk == Series.pk)
                        .where(Instance.sop_instance_uid.in_(chunk))
                    ).all()
                    touched.update((series_pk, study_pk) for _, series_pk, study_pk in rows)
                    session.execute(delete(Instance).where(Instance.pk.in_([pk for pk, _, _ in rows])))
                for series_pk, study_pk in sorted(touched):
                    self._recount(session, series_pk, study_pk)
                series_pks = [series_pk for series_pk, _ in touched]
                study_pks = list({study_pk for _, study_pk in touched})
                session.execute(delete(Series).where(Series.pk.in_(series_pks), Series.number_of_instances == 0))
                patient_pks = list(session.scalars(select(Study.patient_pk).where(Study.pk.in_(study_pks))))
                session.execute(delete(Study).where(Study.pk.in_(study_pks), Study.number_of_instances == 0))
                has_studies = select(Study.pk).where(Study.patient_pk == Patient.pk).exists()
                session.execute(delete(Patient).where(Patient.pk.in_(patient_pks), ~has_studies))
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc

    def record_dead_letter(self, task_name: str, task_id: str, argument: str, error: str, retries: int) -> None:
        """Keep a task that failed for good, so admins see it and can replay it."""
        with self.sessions.begin() as session:
            session.add(
                DeadLetter(task_name=task_name, task_id=task_id, argument=argument, error=error[:4000], retries=retries)
            )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Return the most recent dead letters, newest first."""
        with self.sessions() as session:
            return list(session.scalars(select(DeadLetter).order_by(DeadLetter.pk.desc()).limit(limit)))

    def instance_key(self, sop_instance_uid: str) -> str | None:
        """Return the object key of an indexed instance, or None."""
        with self.sessions() as session:
            return session.execute(
                select(Instance.object_key).where(Instance.sop_instance_uid == sop_instance_uid)
            ).scalar_one_or_none()

    def check(self) -> None:
        """Raise IndexUnavailable when the database cannot be reached (used by /readyz)."""
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc}") from exc
