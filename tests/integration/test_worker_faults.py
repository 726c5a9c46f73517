"""Worker faults with real Redis and real Celery workers: killed mid-task, poison objects, index outage."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from gateway.index.models import Instance
from tests.factories import make_dataset, to_part10_bytes
from tests.fixtures.gateway import gateway_services, make_settings, wait_for, worker_process

pytestmark = pytest.mark.integration


def indexed_uids(services_engine_url: str) -> set[str]:
    path = services_engine_url.split("///", 1)[1]
    with sqlite3.connect(path) as connection:
        return {row[0] for row in connection.execute("SELECT sop_instance_uid FROM instances")}


def test_worker_killed_mid_task_indexes_the_instance_after_restart(tmp_path: Path, broker_url: str) -> None:
    settings = make_settings(tmp_path / "data", broker_url=broker_url, broker_visibility_timeout=3, workers=1)
    broker = redis.Redis.from_url(broker_url)
    with gateway_services(settings) as services:
        ds = make_dataset()
        # Hold the index's write lock so the worker is stuck inside the task when it is killed.
        blocker = sqlite3.connect(settings.resolved_index_url.split("///", 1)[1], isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        with worker_process(settings, tmp_path / "worker.log") as worker:
            services.ingest.ingest_file(to_part10_bytes(ds))
            wait_for(lambda: broker.hlen("unacked") == 1, timeout=30, what="the worker to take the task")
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        blocker.execute("ROLLBACK")
        blocker.close()
        assert indexed_uids(settings.resolved_index_url) == set()
        time.sleep(settings.broker_visibility_timeout + 1)  # the message becomes visible again
        with worker_process(settings, tmp_path / "worker.log"):
            wait_for(
                lambda: indexed_uids(settings.resolved_index_url) == {ds.SOPInstanceUID},
                timeout=60,
                what="the redelivered task to index the instance",
            )


def test_unparseable_object_goes_to_dead_letters_without_retries(tmp_path: Path, broker_url: str) -> None:
    settings = make_settings(tmp_path / "data", broker_url=broker_url)
    with gateway_services(settings) as services, worker_process(settings, tmp_path / "worker.log"):
        ds = make_dataset()
        key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        services.store.put(key, b"\x00" * 128 + b"DICM" + b"\xff" * 64)  # corrupted behind our back
        services.queue.enqueue_index(key)
        wait_for(lambda: len(services.repository.dead_letters()) == 1, timeout=30, what="a dead letter")
        letter = services.repository.dead_letters()[0]
        assert (letter.argument, letter.retries) == (key, 0)
        assert letter.error.startswith("InvalidDicom")
        with services.repository.sessions() as session:
            assert session.scalars(select(Instance)).all() == []


def test_missing_object_goes_to_dead_letters(tmp_path: Path, broker_url: str) -> None:
    settings = make_settings(tmp_path / "data", broker_url=broker_url)
    with gateway_services(settings) as services, worker_process(settings, tmp_path / "worker.log"):
        ds = make_dataset()
        services.ingest.ingest_file(to_part10_bytes(ds))
        key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        wait_for(lambda: services.repository.instance_key(ds.SOPInstanceUID) == key, timeout=30, what="indexing")
        services.queue.enqueue_index(f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/1.2.3.4.dcm")
        wait_for(lambda: len(services.repository.dead_letters()) == 1, timeout=30, what="a dead letter")
        assert services.repository.dead_letters()[0].error.startswith("NotFound")


def test_batch_indexes_its_good_objects_and_dead_letters_only_the_bad_one(tmp_path: Path, broker_url: str) -> None:
    settings = make_settings(tmp_path / "data", broker_url=broker_url)
    with gateway_services(settings) as services, worker_process(settings, tmp_path / "worker.log"):
        good = [make_dataset(rows=8, columns=8) for _ in range(3)]
        keys = []
        for ds in good:
            key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
            services.store.put(key, to_part10_bytes(ds))
            keys.append(key)
        bad = make_dataset()
        bad_key = f"{bad.StudyInstanceUID}/{bad.SeriesInstanceUID}/{bad.SOPInstanceUID}.dcm"
        services.store.put(bad_key, b"\x00" * 128 + b"DICM" + b"\xff" * 64)
        services.queue.enqueue_index_batch([keys[0], bad_key, *keys[1:]])
        expected = {ds.SOPInstanceUID for ds in good}
        wait_for(lambda: indexed_uids(settings.resolved_index_url) == expected, timeout=30, what="the good three")
        wait_for(lambda: len(services.repository.dead_letters()) == 1, timeout=30, what="a dead letter")
        letter = services.repository.dead_letters()[0]
        assert (letter.task_name, letter.argument) == ("gateway.index_instance", bad_key)
        assert letter.error.startswith("InvalidDicom")
