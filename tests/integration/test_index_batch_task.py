"""The index batch task run in process against real Redis and SQLite: one failing object spares the batch."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import select

from gateway.index.models import Instance
from gateway.indexing import IndexingService
from gateway.queue import INDEX_BATCH, REINDEX_BATCH
from tests.factories import make_dataset, to_part10_bytes
from tests.fixtures.gateway import gateway_services, make_settings
from tests.part10 import dataset_bytes
from workers.celery_app import make_celery

pytestmark = pytest.mark.integration


def test_an_unforeseen_error_on_one_object_dead_letters_it_and_indexes_the_rest(
    tmp_path: Path, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "data", broker_url=broker_url)
    with gateway_services(settings) as services:
        good, bad = make_dataset(), make_dataset()
        keys = [services.ingest.ingest_file(to_part10_bytes(ds)).key for ds in (good, bad)]
        original = IndexingService.record

        def record(self: IndexingService, key: str, verify_seal: bool = False) -> object:
            if key == keys[1]:
                raise RuntimeError("a library surprise")  # not a GatewayError: no code path foresaw it
            return original(self, key, verify_seal)

        monkeypatch.setattr(IndexingService, "record", record)
        app = make_celery(settings)
        result = app.tasks[INDEX_BATCH].apply(args=("\n".join(keys),))

        assert result.successful() and result.result == 1
        with services.repository.sessions() as session:
            indexed = set(session.scalars(select(Instance.sop_instance_uid)))
        assert indexed == {good.SOPInstanceUID}
        letters = services.repository.dead_letters()
        assert [(letter.argument, letter.error) for letter in letters] == [
            (keys[1], "RuntimeError: a library surprise")
        ]


def test_an_unforeseen_error_of_the_whole_task_is_a_dead_letter_not_a_lost_batch(
    tmp_path: Path, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "data", broker_url=broker_url)
    with gateway_services(settings) as services:
        key = services.ingest.ingest_file(to_part10_bytes(make_dataset())).key

        def index_records(self: IndexingService, records: object) -> list[bool]:
            raise RuntimeError("a bug")

        monkeypatch.setattr(IndexingService, "index_records", index_records)
        result = make_celery(settings).tasks[INDEX_BATCH].apply(args=(key,))

        assert result.successful() and result.result is None
        letters = services.repository.dead_letters()
        assert [(letter.task_name, letter.argument, letter.error) for letter in letters] == [
            (INDEX_BATCH, key, "RuntimeError: a bug")
        ]


def test_reindex_refuses_an_object_torn_by_a_crash_and_indexes_the_whole_ones(tmp_path: Path, broker_url: str) -> None:
    settings = make_settings(tmp_path / "data", broker_url=broker_url)
    with gateway_services(settings) as services:
        datasets = [make_dataset(rows=64, columns=64) for _ in range(3)]
        keys = [
            services.ingest.ingest_dataset(
                dataset_bytes(to_part10_bytes(ds)), ExplicitVRLittleEndian, ds.SOPClassUID, ds.SOPInstanceUID
            ).key
            for ds in datasets
        ]
        # A power loss while the SCP wrote the second one in place: its length is right, a block is not.
        torn = settings.data_dir / "objects" / keys[1]
        data = bytearray(torn.read_bytes())
        data[-4096:] = bytes(4096)
        torn.write_bytes(bytes(data))

        result = make_celery(settings).tasks[REINDEX_BATCH].apply(args=("\n".join(keys),))

        assert result.successful() and result.result == 2
        with services.repository.sessions() as session:
            indexed = set(session.scalars(select(Instance.sop_instance_uid)))
        assert indexed == {datasets[0].SOPInstanceUID, datasets[2].SOPInstanceUID}
        letters = services.repository.dead_letters()
        assert len(letters) == 1 and letters[0].argument == keys[1]
        assert "is torn (its seal does not hold)" in letters[0].error
