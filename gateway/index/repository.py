"""Idempotent writes to the index: instance upserts that keep study/series counts right under concurrency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, configure_mappers, sessionmaker

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


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


class _Ensure:
    """Prebuilt statements to insert-or-lock-and-update one row of `model` by its natural key.

    Built once and executed with parameters: constructing SQLAlchemy statements per instance
    (values(), coercions) cost more than running them, about 60% of the indexing time.
    """

    def __init__(self, model: type[Any], key: tuple[str, ...], postgres: bool) -> None:
        table = _table(model)
        self.key = key
        self.insert = (pg_insert if postgres else sqlite_insert)(table).on_conflict_do_nothing(index_elements=list(key))
        query = select(table.c.pk).where(and_(*(table.c[name] == bindparam(f"key_{name}") for name in key)))
        self.select = query.with_for_update() if postgres else query
        self.update = update(table).where(table.c.pk == bindparam("row_pk"))

    def __call__(self, connection: Connection, values: dict[str, Any]) -> int:
        """Insert the row unless it exists (race-free), lock it, update its attributes; return its pk."""
        connection.execute(self.insert, values)
        pk: int = connection.execute(self.select, {f"key_{name}": values[name] for name in self.key}).scalar_one()
        connection.execute(self.update, {**{k: v for k, v in values.items() if k not in self.key}, "row_pk": pk})
        return pk


_SERIES_COUNT = (
    update(_table(Series))
    .where(_table(Series).c.pk == bindparam("count_series_pk"))
    .values(
        number_of_instances=select(func.count(Instance.pk))
        .where(Instance.series_pk == bindparam("count_series_pk"))
        .scalar_subquery()
    )
)
_STUDY_SERIES = (
    select(Series.modality, func.count(Instance.pk))
    .join(Instance, Instance.series_pk == Series.pk)
    .where(Series.study_pk == bindparam("count_study_pk"))
    .group_by(Series.pk, Series.modality)
)
_STUDY_COUNT = (
    update(_table(Study)).where(_table(Study).c.pk == bindparam("count_study_pk")).values(updated_at=func.now())
)
_PREVIOUS_SERIES = select(Instance.sop_instance_uid, Instance.series_pk).where(
    Instance.sop_instance_uid.in_(bindparam("sops", expanding=True))
)
_SERIES_STUDY = select(Series.study_pk).where(Series.pk == bindparam("series_pk"))
_INSERT_INSTANCE = insert(_table(Instance)).values(indexed_at=func.now())
_UPDATE_INSTANCE = (
    update(_table(Instance))
    .where(_table(Instance).c.sop_instance_uid == bindparam("sop"))
    .values(indexed_at=func.now())
)


def _instance_row(record: InstanceRecord, series_pk: int) -> dict[str, Any]:
    attrs = record.attributes
    return {
        "sop_instance_uid": attrs.sop_instance_uid,
        "series_pk": series_pk,
        "sop_class_uid": attrs.sop_class_uid,
        "instance_number": attrs.instance_number,
        "rows": attrs.rows,
        "columns": attrs.columns,
        "number_of_frames": attrs.number_of_frames,
        "acquisition_date_time": attrs.acquisition_date_time,
        "transfer_syntax_uid": record.transfer_syntax_uid,
        "object_key": record.object_key,
        "size": record.size,
        "metadata_json": record.metadata_json,
        "frame_offsets": record.frame_offsets,
    }


class IndexRepository:
    """The index's write side (and the few reads the write side needs)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions: sessionmaker[Session] = make_session_factory(engine)
        self._postgres = engine.dialect.name == "postgresql"
        self._patient = _Ensure(Patient, ("patient_id", "issuer_of_patient_id"), self._postgres)
        self._study = _Ensure(Study, ("study_instance_uid",), self._postgres)
        self._series = _Ensure(Series, ("series_instance_uid",), self._postgres)

    def upsert_instance(self, record: InstanceRecord) -> bool:
        """Insert or update one instance and recount its series and study; return True if it was new.

        Raises IndexUnavailable when the database cannot be reached.
        """
        return self.upsert_instances([record])[0]

    def upsert_instances(self, records: Sequence[InstanceRecord]) -> list[bool]:
        """Upsert several instances in one transaction (one commit); True for each that was new.

        An instance twice in the batch is new at most once, and its last record wins.
        Raises IndexUnavailable when the database cannot be reached.
        """
        try:
            with self.sessions.begin() as session:
                connection = session.connection()
                ensured: dict[tuple[Any, ...], tuple[dict[str, Any], int]] = {}  # see _ensure
                # Writers take study rows in one order (by UID), so two batches cannot deadlock. The
                # first statement writes, so SQLite takes its write lock at once (no read-to-write upgrade).
                order = sorted(range(len(records)), key=lambda i: records[i].attributes.study_instance_uid)
                series: dict[int, tuple[int, int]] = {}  # record index -> (series pk, study pk)
                for i in order:
                    series[i] = self._parents(connection, records[i], ensured)
                return self._write_instances(connection, records, series)
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc

    def warm(self) -> None:
        """Compile the write side's statements in this process, writing nothing (the transaction rolls back).

        SQLAlchemy configures its mappers and compiles each statement on first use, per engine: a worker
        process's first batch cost ~60 ms more than the next (a rate of 10 % of a 2-core machine during a
        one-second push into a fresh gateway). Raises IndexUnavailable when the database cannot be reached
        or has no schema yet.
        """
        configure_mappers()
        uid = "2.25.0"  # a valid UID no instance has: the rows below never commit in any case
        values: dict[str, Any] = {field.name: None for field in fields(InstanceAttributes)}
        values.update(patient_id="", issuer_of_patient_id="")
        for name in ("study_instance_uid", "series_instance_uid", "sop_instance_uid", "sop_class_uid"):
            values[name] = uid
        record = InstanceRecord(InstanceAttributes(**values), "", 0, uid, "{}", None, {}, {})
        try:
            with self.sessions() as session:
                connection = session.connection()
                self._write_instances(connection, [record], {0: self._parents(connection, record, {})})
                session.rollback()
        except SQLAlchemyError as exc:  # unreachable, or not migrated yet
            raise IndexUnavailable(f"index database not ready: {getattr(exc, 'orig', None) or exc}") from exc

    def _write_instances(
        self, connection: Connection, records: Sequence[InstanceRecord], series: dict[int, tuple[int, int]]
    ) -> list[bool]:
        # Whole-batch statements: one SELECT for the instances already indexed, then one executemany
        # INSERT (and UPDATE): per-instance statements were most of the workers' SQL time.
        sops = [record.attributes.sop_instance_uid for record in records]
        previous: dict[str, int] = {}
        for start in range(0, len(sops), 500):  # stay under SQL parameter limits
            for sop, series_pk in connection.execute(_PREVIOUS_SERIES, {"sops": sops[start : start + 500]}):
                previous[sop] = series_pk
        recount = dict(sorted(series.values()))
        for series_pk in set(previous.values()) - recount.keys():  # an instance moved to another series
            recount[series_pk] = connection.execute(_SERIES_STUDY, {"series_pk": series_pk}).scalar_one()
        values: dict[str, dict[str, Any]] = {}  # SOP -> its last record's row
        new = [False] * len(records)
        for i, record in enumerate(records):
            sop = sops[i]
            new[i] = sop not in previous and sop not in values
            values[sop] = _instance_row(record, series[i][0])
        inserts = [row for sop, row in values.items() if sop not in previous]
        updates = [{**row, "sop": sop} for sop, row in values.items() if sop in previous]
        if inserts:
            connection.execute(_INSERT_INSTANCE, inserts)
        if updates:
            connection.execute(_UPDATE_INSTANCE, updates)
        for series_pk, study_pk in recount.items():
            self._recount(connection, series_pk, study_pk)
        return new

    @staticmethod
    def _ensure(
        ensure: _Ensure,
        connection: Connection,
        values: dict[str, Any],
        ensured: dict[tuple[Any, ...], tuple[dict[str, Any], int]],
    ) -> int:
        # Instances of one batch mostly share their patient, study and series rows with the same values:
        # writing such a row again in the same transaction would change nothing, so it is written once.
        key = (ensure.key, *(values[name] for name in ensure.key))
        done = ensured.get(key)
        if done is not None and done[0] == values:
            return done[1]
        pk = ensure(connection, values)
        ensured[key] = (values, pk)
        return pk

    def _parents(
        self,
        connection: Connection,
        record: InstanceRecord,
        ensured: dict[tuple[Any, ...], tuple[dict[str, Any], int]],
    ) -> tuple[int, int]:
        """Insert or update the record's patient, study and series rows; return (series pk, study pk)."""
        attrs = vars(record.attributes)  # flat scalars: no deep copy (dataclasses.asdict) needed
        patient_pk = self._ensure(
            self._patient,
            connection,
            {
                "patient_id": attrs["patient_id"],
                "issuer_of_patient_id": attrs["issuer_of_patient_id"],
                **{f: attrs[f] for f in _PATIENT_FIELDS},
                "patient_name_upper": normalize_person_name(attrs["patient_name"]),
            },
            ensured,
        )
        # Locking the study row serializes concurrent writers of one study, so recounts see each other.
        study_pk = self._ensure(
            self._study,
            connection,
            {
                "study_instance_uid": attrs["study_instance_uid"],
                "patient_pk": patient_pk,
                "study_json": record.study_json,
                **{f: attrs[f] for f in _STUDY_FIELDS},
                "referring_physician_name_upper": normalize_person_name(attrs["referring_physician_name"]),
            },
            ensured,
        )
        series_pk = self._ensure(
            self._series,
            connection,
            {
                "series_instance_uid": attrs["series_instance_uid"],
                "study_pk": study_pk,
                "series_json": record.series_json,
                **{f: attrs[f] for f in _SERIES_FIELDS},
            },
            ensured,
        )
        return series_pk, study_pk

    @staticmethod
    def _recount(connection: Connection | Session, series_pk: int, study_pk: int) -> None:
        connection.execute(_SERIES_COUNT, {"count_series_pk": series_pk})
        rows = connection.execute(_STUDY_SERIES, {"count_study_pk": study_pk}).all()
        modalities = sorted({m for m, _ in rows if m})
        connection.execute(
            _STUDY_COUNT,
            {
                "count_study_pk": study_pk,
                "number_of_series": len(rows),
                "number_of_instances": sum(count for _, count in rows),
                "modalities_in_study": "\\".join(modalities),
            },
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
