"""Task bodies: thin calls into gateway services, taking object keys or UIDs, never datasets."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog
from celery import Celery

from gateway.errors import GatewayError
from gateway.fhir.service import FhirService
from gateway.index.repository import InstanceRecord
from gateway.queue import FHIR_PUSH, INDEX_BATCH, INDEX_INSTANCE, REINDEX_BATCH, STUDY_CHANGED
from gateway.services import Services
from workers.base import TRANSIENT_ERRORS, dead_letter, gateway_task

log = structlog.get_logger(__name__)


def register_tasks(app: Celery, services: Callable[[], Services]) -> None:
    """Register every task of the gateway on `app`."""
    fhir_services: dict[int, FhirService] = {}
    lock = threading.Lock()

    def fhir(current: Services) -> FhirService:
        # One FHIR service (and push client) per Services, i.e. per worker process.
        with lock:
            if id(current) not in fhir_services:
                fhir_services[id(current)] = FhirService.from_services(current)
            return fhir_services[id(current)]

    @gateway_task(app, INDEX_INSTANCE, services)
    def index_instance(current: Services, key: str) -> object:
        new = current.indexing.index_object(key)
        fhir(current).instance_indexed(key)
        return new

    def index_keys(current: Services, argument: str, verify_seal: bool) -> int:
        records: list[InstanceRecord] = []
        for key in filter(None, argument.split("\n")):
            try:
                records.append(current.indexing.record(key, verify_seal=verify_seal))
            except TRANSIENT_ERRORS:
                raise  # the whole batch is retried; indexing is idempotent
            except Exception as exc:
                # One unreadable object must not hold back the others: it alone goes to the dead letters
                # (with a traceback in the log when it is not a GatewayError, i.e. not foreseen).
                if not isinstance(exc, GatewayError):
                    log.exception("index.record_unexpected_error", key=key)
                task_id = str(structlog.contextvars.get_contextvars().get("task_id", ""))
                dead_letter(current, INDEX_INSTANCE, task_id, key, exc, 0)
        new = current.indexing.index_records(records)
        changes = fhir(current)
        for study_instance_uid in sorted({record.attributes.study_instance_uid for record in records}):
            changes.note_change(study_instance_uid)
        return sum(new)

    @gateway_task(app, INDEX_BATCH, services)
    def index_batch(current: Services, argument: str) -> object:
        # Keys journaled by the SCP and published together: one index transaction for all of them.
        return index_keys(current, argument, verify_seal=False)

    @gateway_task(app, REINDEX_BATCH, services)
    def reindex_batch(current: Services, argument: str) -> object:
        # Keys listed by `reindex` from the object store: a crash may have torn some of them.
        return index_keys(current, argument, verify_seal=True)

    @gateway_task(app, STUDY_CHANGED, services)
    def study_changed(current: Services, study_instance_uid: str) -> object:
        return fhir(current).study_changed(study_instance_uid)

    @gateway_task(app, FHIR_PUSH, services)
    def fhir_push(current: Services, study_instance_uid: str) -> object:
        return fhir(current).push_study(study_instance_uid)
