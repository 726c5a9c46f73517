"""Push to an EHR's FHIR server: real Redis, real Celery workers, and a real HTTP FHIR server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import Settings
from gateway.fhir.push import PushStates
from gateway.fhir.service import FhirService
from gateway.services import Services
from tests.factories import make_dataset, to_part10_bytes
from tests.fixtures.fhir_server import FhirServerState, RecordingFhirServer, running_fhir_server
from tests.fixtures.gateway import gateway_services, make_settings, wait_for, worker_process
from tests.fixtures.http import running_api

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"


@pytest.fixture
def state() -> FhirServerState:
    return FhirServerState(token=TOKEN)


@pytest.fixture
def fhir_server(state: FhirServerState) -> Iterator[RecordingFhirServer]:
    yield from running_fhir_server(state)


def push_settings(tmp_path: Path, broker_url: str, server: RecordingFhirServer, **extra: Any) -> Settings:
    return make_settings(
        tmp_path / "data",
        broker_url=broker_url,
        fhir_debounce_seconds=0.5,
        fhir_push_url=server.base_url,
        fhir_push_token=TOKEN,
        task_retry_backoff_max=1,
        **extra,
    )


def push_state(services: Services, study: str) -> str | None:
    found = PushStates(services.engine).get("ImagingStudy", study)
    return found.status if found else None


def test_retries_on_503_and_sends_each_new_version(
    tmp_path: Path, broker_url: str, fhir_server: RecordingFhirServer, state: FhirServerState
) -> None:
    state.fail_with = [503, 503]
    settings = push_settings(tmp_path, broker_url, fhir_server)
    with gateway_services(settings) as services, worker_process(settings, tmp_path / "worker.log"):
        first = make_dataset()
        study = first.StudyInstanceUID
        services.ingest.ingest_file(to_part10_bytes(first))
        wait_for(lambda: len(state.puts(201)) == 1, timeout=60, what="the ImagingStudy to be created")
        assert [r.status for r in state.puts()] == [503, 503, 201]
        sent = state.puts(201)[0]
        assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
        assert sent.query == {"identifier": [f"urn:dicom:uid|urn:oid:{study}"]}
        assert sent.body is not None and "id" not in sent.body and "reference" not in sent.body["subject"]
        assert sent.body["subject"]["identifier"] == {"value": first.PatientID}
        wait_for(lambda: push_state(services, study) == "sent", timeout=30, what="the push to be recorded")

        services.ingest.ingest_file(to_part10_bytes(make_dataset(study_uid=study, modality="MR", SeriesNumber=2)))
        wait_for(lambda: len(state.puts(200)) == 1, timeout=60, what="the new version to be sent")
        stored = state.resources[f"urn:dicom:uid|urn:oid:{study}"]
        assert (stored["meta"]["versionId"], stored["numberOfSeries"], stored["numberOfInstances"]) == ("2", 2, 2)

        # The state already says "sent" (version 1) until the worker records the second push: wait for version 2.
        def second_recorded() -> bool:
            pushed = PushStates(services.engine).get("ImagingStudy", study)
            return pushed is not None and pushed.status == "sent" and pushed.pushed_version == 2

        wait_for(second_recorded, timeout=30, what="the second push to be recorded")
        pushed = PushStates(services.engine).get("ImagingStudy", study)
        assert pushed is not None and (pushed.pushed_version, pushed.attempts) == (2, 0)
        assert services.repository.dead_letters() == []


def test_400_is_given_up_recorded_and_visible(
    tmp_path: Path, broker_url: str, fhir_server: RecordingFhirServer, state: FhirServerState
) -> None:
    state.reject = True
    settings = push_settings(tmp_path, broker_url, fhir_server)
    log = tmp_path / "worker.log"
    with gateway_services(settings) as services, worker_process(settings, log), running_api(services) as base:
        ds = make_dataset()
        services.ingest.ingest_file(to_part10_bytes(ds))
        wait_for(lambda: push_state(services, ds.StudyInstanceUID) == "failed", timeout=60, what="the rejection")
        failed = httpx.get(f"{base}/api/fhir/push", params={"status": "failed"}, timeout=10).json()["pushes"]
        assert [(p["id"], p["httpStatus"], p["attempts"]) for p in failed] == [(ds.StudyInstanceUID, 400, 1)]
        assert failed[0]["outcome"]["issue"][0]["diagnostics"] == "ImagingStudy refused by policy"
        wait_for(lambda: b"fhir.push.rejected" in log.read_bytes(), timeout=10, what="the rejection in the log")
        assert len(state.puts()) == 1  # a 4xx is not retried
        assert services.repository.dead_letters() == []


def test_nothing_is_lost_while_the_server_is_down(
    tmp_path: Path, broker_url: str, fhir_server: RecordingFhirServer, state: FhirServerState
) -> None:
    fhir_server.stop()
    settings = push_settings(tmp_path, broker_url, fhir_server)
    with gateway_services(settings) as services, worker_process(settings, tmp_path / "worker.log"):
        datasets = [make_dataset(), make_dataset(modality="MR")]
        for ds in datasets:
            services.ingest.ingest_file(to_part10_bytes(ds))

        def retried(times: int) -> bool:
            states = [PushStates(services.engine).get("ImagingStudy", ds.StudyInstanceUID) for ds in datasets]
            return all(s is not None and s.status == "retrying" and s.attempts >= times for s in states)

        wait_for(lambda: retried(3), timeout=90, what="pushes retrying while the server is down")
        fhir_server.start()  # the same port: the server is back
        wait_for(lambda: len(state.puts(201)) == 2, timeout=60, what="both studies delivered")
        assert {r.query["identifier"][0] for r in state.puts(201)} == {
            f"urn:dicom:uid|urn:oid:{ds.StudyInstanceUID}" for ds in datasets
        }
        for ds in datasets:
            wait_for(lambda ds=ds: push_state(services, ds.StudyInstanceUID) == "sent", timeout=30, what="sent")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Queue:
    def __init__(self) -> None:
        self.pushes: list[float] = []

    def enqueue_study_changed(self, study_instance_uid: str, countdown: float) -> None:
        pass

    def enqueue_fhir_push(self, study_instance_uid: str, countdown: float = 0.0) -> None:
        self.pushes.append(countdown)


def test_hours_of_outage_keep_retrying_until_the_configured_limit(
    tmp_path: Path, fhir_server: RecordingFhirServer, state: FhirServerState
) -> None:
    """The retry schedule against a server answering 503 for 25 hours, on a simulated clock."""
    settings = make_settings(
        tmp_path / "data",
        fhir_push_url=fhir_server.base_url,
        fhir_push_token=TOKEN,
        fhir_push_retry_seconds=86400,
        task_retry_backoff_max=300,
    )
    clock, queue = Clock(), Queue()
    with gateway_services(settings) as services:
        fhir = FhirService(settings, services.engine, queue, clock=clock)
        ds = make_dataset()
        key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        services.store.put(key, to_part10_bytes(ds))
        services.indexing.index_object(key)
        fhir.build(ds.StudyInstanceUID)
        assert queue.pushes == [0.0]
        state.fail_with = [503] * 10_000
        started = clock.now
        outcomes = [fhir.push_study(ds.StudyInstanceUID)]
        while outcomes[-1] == "retrying":
            clock.now += timedelta(seconds=queue.pushes[-1])  # when the queued retry runs
            outcomes.append(fhir.push_study(ds.StudyInstanceUID))
            if clock.now - started < timedelta(hours=1):
                assert outcomes[-1] == "retrying"  # an hour down: still trying
        assert outcomes[-1] == "failed"
        assert timedelta(hours=24) <= clock.now - started < timedelta(hours=25)
        assert all(0 < delay <= settings.task_retry_backoff_max for delay in queue.pushes[1:])
        state.fail_with = []
        assert fhir.push_study(ds.StudyInstanceUID) == "sent"  # e.g. when the next version or an admin asks
        assert fhir.push_study(ds.StudyInstanceUID) == "up-to-date"
        fhir.close()
