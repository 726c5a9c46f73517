"""Build the worker's Celery app: house configuration, tasks registered, services built per process."""

from __future__ import annotations

import os
import threading

import structlog
from celery import Celery
from celery.signals import worker_process_init

from gateway.config import Settings
from gateway.queue import celery_config
from gateway.runtime import settle_heap
from gateway.services import Services, build_services
from workers.tasks import register_tasks


def make_celery(settings: Settings, broker_url: str | None = None) -> Celery:
    """Return a Celery app whose tasks use services built lazily in each worker process."""
    url = broker_url or settings.broker_url
    app = Celery("dicom-gateway", set_as_current=False)
    app.conf.update(celery_config(settings, url))
    cache: dict[int, Services] = {}
    lock = threading.Lock()

    def services() -> Services:
        # One set of services (engine pool, S3 client) per process: prefork children must not share sockets.
        pid = os.getpid()
        with lock:
            if pid not in cache:
                cache[pid] = build_services(settings, broker_url=url)
            return cache[pid]

    register_tasks(app, services)

    def start_pool_process(**_: object) -> None:
        # Build and warm this pool process's services before its first task, then settle its heap
        # (runtime.py): the first batch of the first push no longer pays for all three (~100 ms).
        try:
            services().warm()
        except Exception:  # e.g. a bad storage URL: the first task builds them again and reports it
            structlog.get_logger(__name__).exception("worker.services_not_built")
        settle_heap()

    worker_process_init.connect(start_pool_process, weak=False)
    return app
