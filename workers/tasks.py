"""Task bodies: thin calls into gateway services, taking object keys or UIDs, never datasets."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

from gateway.queue import INDEX_INSTANCE
from gateway.services import Services
from workers.base import gateway_task


def register_tasks(app: Celery, services: Callable[[], Services]) -> None:
    """Register every task of the gateway on `app`."""

    @gateway_task(app, INDEX_INSTANCE, services)
    def index_instance(current: Services, key: str) -> object:
        return current.indexing.index_object(key)
