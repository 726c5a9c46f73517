"""Task bodies: thin calls into gateway services, taking object keys or UIDs, never datasets."""

from __future__ import annotations

import threading
from collections.abc import Callable

from celery import Celery

from gateway.fhir.service import FhirService
from gateway.queue import FHIR_PUSH, INDEX_INSTANCE, STUDY_CHANGED
from gateway.services import Services
from workers.base import gateway_task


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

    @gateway_task(app, STUDY_CHANGED, services)
    def study_changed(current: Services, study_instance_uid: str) -> object:
        return fhir(current).study_changed(study_instance_uid)

    @gateway_task(app, FHIR_PUSH, services)
    def fhir_push(current: Services, study_instance_uid: str) -> object:
        return fhir(current).push_study(study_instance_uid)
