"""One index suite, run on SQLite and on PostgreSQL: idempotent upserts and counts under any arrival order."""

from __future__ import annotations

import random
import threading
from dataclasses import replace

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, event, func, select
from sqlalchemy.engine import Connection, ExecutionContext
from sqlalchemy.engine.default import CACHE_HIT

from gateway.dicom.attributes import InstanceAttributes
from gateway.index.db import make_engine, migrate
from gateway.index.models import Base, Instance, Patient, Series, Study
from gateway.index.queries import list_studies
from gateway.index.repository import IndexRepository, InstanceRecord
from tests.factories import new_uid


@pytest.fixture
def engine(index_url: str) -> Engine:
    engine = make_engine(index_url)
    migrate(engine)
    return engine


def attributes(study: str, series: str, sop: str, modality: str = "CT", number: int = 1) -> InstanceAttributes:
    return InstanceAttributes(
        patient_id="PID-1",
        issuer_of_patient_id="",
        patient_name="Doe^Jane",
        patient_birth_date="19700101",
        patient_sex="F",
        study_instance_uid=study,
        study_date="20240102",
        study_time="101500",
        accession_number="ACC1",
        referring_physician_name="Ref^Doc",
        study_id="S1",
        study_description="Chest",
        series_instance_uid=series,
        modality=modality,
        series_number=1,
        series_description="Axial",
        performed_procedure_step_start_date=None,
        performed_procedure_step_start_time=None,
        body_part_examined="CHEST",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid=sop,
        instance_number=number,
        rows=8,
        columns=8,
        number_of_frames=None,
    )


def record(attrs: InstanceAttributes) -> InstanceRecord:
    key = f"{attrs.study_instance_uid}/{attrs.series_instance_uid}/{attrs.sop_instance_uid}.dcm"
    return InstanceRecord(attrs, key, 1234, "1.2.840.10008.1.2.1", "{}", [[[300, 128]]], {}, {})


def counts(engine: Engine, study: str) -> tuple[int, int, str, list[int]]:
    repository = IndexRepository(engine)
    with repository.sessions() as session:
        row = session.execute(select(Study).where(Study.study_instance_uid == study)).scalar_one()
        per_series = session.scalars(
            select(Series.number_of_instances).where(Series.study_pk == row.pk).order_by(Series.series_instance_uid)
        ).all()
        return row.number_of_series, row.number_of_instances, row.modalities_in_study, list(per_series)


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    migrate(engine)  # a second run is a no-op


def test_counts_stay_right_in_any_order_and_when_sent_twice(engine: Engine) -> None:
    repository = IndexRepository(engine)
    study, ct, mr = new_uid(), new_uid(), new_uid()
    items = [attributes(study, ct, new_uid(), "CT", n) for n in range(5)]
    items += [attributes(study, mr, new_uid(), "MR", n) for n in range(3)]
    shuffled = items + items[:4]  # four duplicates
    random.Random(7).shuffle(shuffled)
    new_flags = [repository.upsert_instance(record(a)) for a in shuffled]
    assert sum(new_flags) == 8
    series_counts = sorted(counts(engine, study)[3])
    assert counts(engine, study)[:3] == (2, 8, "CT\\MR")
    assert series_counts == [3, 5]
    rows = list_studies(repository.sessions)
    assert [r.study.study_instance_uid for r in rows] == [study]
    assert rows[0].patient.patient_name == "Doe^Jane"


def test_a_batch_counts_like_single_upserts_and_its_last_differing_values_win(engine: Engine) -> None:
    repository = IndexRepository(engine)
    study, ct, mr = new_uid(), new_uid(), new_uid()
    items = [attributes(study, ct, new_uid(), "CT", n) for n in range(5)]
    items += [attributes(study, mr, new_uid(), "MR", n) for n in range(3)]
    # The series' description changes within the batch: the row shared by these instances must follow.
    items.append(replace(attributes(study, ct, new_uid(), "CT", 5), series_description="Axial 2"))
    assert repository.upsert_instances([record(a) for a in items]) == [True] * 9
    with repository.sessions() as session:
        description = session.scalar(select(Series.series_description).where(Series.series_instance_uid == ct))
    assert description == "Axial 2"
    assert repository.upsert_instances([record(a) for a in items[:2]]) == [False, False]
    assert counts(engine, study)[:3] == (2, 9, "CT\\MR")
    assert sorted(counts(engine, study)[3]) == [3, 6]


def test_warming_compiles_a_new_instance_batch_statements_and_writes_nothing(engine: Engine) -> None:
    repository = IndexRepository(engine)
    repository.warm()
    with repository.sessions() as session:
        rows = [session.scalar(select(func.count()).select_from(m)) for m in (Patient, Study, Series, Instance)]
    assert rows == [0, 0, 0, 0]
    compiled: list[str] = []

    def note(
        connection: Connection,
        cursor: object,
        statement: str,
        parameters: object,
        context: ExecutionContext,
        many: bool,
    ) -> None:
        if getattr(context, "cache_hit", None) is not CACHE_HIT:
            compiled.append(statement)

    event.listen(engine, "after_cursor_execute", note)
    study, series = new_uid(), new_uid()
    assert repository.upsert_instances([record(attributes(study, series, new_uid()))]) == [True]
    event.remove(engine, "after_cursor_execute", note)
    assert compiled == []  # every statement of the batch came from the cache the warm-up filled
    assert counts(engine, study) == (1, 1, "CT", [1])


def test_concurrent_workers_keep_counts_right(engine: Engine) -> None:
    repository = IndexRepository(engine)
    study, series = new_uid(), new_uid()
    items = [attributes(study, series, new_uid(), number=n) for n in range(24)]
    errors: list[BaseException] = []

    def work(chunk: list[InstanceAttributes]) -> None:
        try:
            for attrs in chunk + chunk[:2]:
                repository.upsert_instance(record(attrs))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(items[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert counts(engine, study) == (1, 24, "CT", [24])


def test_instance_moved_to_another_series_is_recounted(engine: Engine) -> None:
    repository = IndexRepository(engine)
    study, first, second, sop = new_uid(), new_uid(), new_uid(), new_uid()
    repository.upsert_instance(record(attributes(study, first, sop)))
    repository.upsert_instance(record(attributes(study, first, new_uid())))
    assert repository.upsert_instance(record(replace(attributes(study, second, sop), modality="MR"))) is False
    assert counts(engine, study)[:3] == (2, 2, "CT\\MR")
    with repository.sessions() as session:
        assert session.scalar(select(Instance.object_key).where(Instance.sop_instance_uid == sop)).startswith(
            f"{study}/{second}/"
        )


def test_an_instance_twice_in_a_batch_is_new_once_and_its_last_record_wins(engine: Engine) -> None:
    repository = IndexRepository(engine)
    study, first, second, sop, moved = new_uid(), new_uid(), new_uid(), new_uid(), new_uid()
    repository.upsert_instance(record(attributes(study, first, moved)))
    batch = [
        record(attributes(study, first, sop, number=1)),
        record(attributes(study, first, new_uid(), number=2)),
        record(attributes(study, first, sop, number=7)),  # sent again, renumbered
        record(replace(attributes(study, second, moved), modality="MR")),  # indexed before: moves series
    ]
    assert repository.upsert_instances(batch) == [True, True, False, False]
    assert counts(engine, study) == (2, 3, "CT\\MR", [2, 1] if first < second else [1, 2])
    with repository.sessions() as session:
        assert session.scalar(select(Instance.instance_number).where(Instance.sop_instance_uid == sop)) == 7
        assert session.scalar(select(Instance.object_key).where(Instance.sop_instance_uid == moved)).startswith(
            f"{study}/{second}/"
        )


def test_dead_letters_are_kept(engine: Engine) -> None:
    repository = IndexRepository(engine)
    repository.record_dead_letter("gateway.index_instance", "tid", "a/b/c.dcm", "InvalidDicom: broken", 0)
    letters = repository.dead_letters()
    assert [(d.task_name, d.argument, d.error) for d in letters] == [
        ("gateway.index_instance", "a/b/c.dcm", "InvalidDicom: broken")
    ]
