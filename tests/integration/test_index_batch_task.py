"""The index batch task run in process against real Redis and SQLite: one failing object spares the batch."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.index.models import Instance
from gateway.indexing import IndexingService
from gateway.queue import INDEX_BATCH
from tests.factories import make_dataset, to_part10_bytes
from tests.fixtures.gateway import gateway_services, make_settings
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

        def record(self: IndexingService, key: str) -> object:
            if key == keys[1]:
                raise RuntimeError("a library surprise")  # not a GatewayError: no code path foresaw it
            return original(self, key)

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
