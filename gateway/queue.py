"""Producer side of the task queue: the gateway enqueues work by task name and never imports `workers`."""

from __future__ import annotations

from typing import Any, Protocol

from celery import Celery
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError

from gateway.config import Settings
from gateway.errors import QueueUnavailable

# Task names are the contract between producers (here) and consumers (workers/tasks.py).
INDEX_INSTANCE = "gateway.index_instance"
INDEX_BATCH = "gateway.index_batch"  # argument: object keys joined by newlines
# The same for `reindex`: objects a crash may have torn are checked first (gateway/dicom/seal.py).
REINDEX_BATCH = "gateway.reindex_batch"
STUDY_CHANGED = "gateway.study_changed"
FHIR_PUSH = "gateway.fhir_push"
INDEX_QUEUE = "index"


def celery_config(settings: Settings, broker_url: str) -> dict[str, Any]:
    """Return the Celery settings shared by producers and workers."""
    return {
        "broker_url": broker_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": INDEX_QUEUE,
        # FHIR tasks share the index queue: every worker consumes it, and they are short and follow indexing.
        "task_routes": {
            name: {"queue": INDEX_QUEUE}
            for name in (INDEX_INSTANCE, INDEX_BATCH, REINDEX_BATCH, STUDY_CHANGED, FHIR_PUSH)
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.broker_timeout,
        # An unacknowledged task (worker killed) is delivered again after this many seconds.
        "broker_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout,
            "socket_timeout": settings.broker_timeout,
            "socket_connect_timeout": settings.broker_timeout,
        },
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


class TaskQueue(Protocol):
    """What the ingest service needs from the broker."""

    def enqueue_index(self, key: str) -> None:
        """Queue indexing of the object at `key`; raise QueueUnavailable when it cannot be queued."""
        ...

    def check(self) -> None:
        """Raise QueueUnavailable when the broker cannot be reached."""
        ...


class CeleryQueue:
    """Publishes tasks to the Celery broker (Redis) by name."""

    def __init__(self, settings: Settings, broker_url: str) -> None:
        self.broker_url = broker_url
        self.app = Celery("dicom-gateway-producer", set_as_current=False)
        self.app.conf.update(celery_config(settings, broker_url))

    def enqueue_index(self, key: str) -> None:
        self._send(INDEX_INSTANCE, key)

    def enqueue_index_batch(self, keys: list[str]) -> None:
        """Queue indexing of several objects as one task (one index transaction); raise QueueUnavailable."""
        self._send(INDEX_BATCH, "\n".join(keys))

    def enqueue_reindex_batch(self, keys: list[str]) -> None:
        """Queue indexing of stored objects after a crash or a lost index: torn objects are refused."""
        self._send(REINDEX_BATCH, "\n".join(keys))

    def enqueue_study_changed(self, study_instance_uid: str, countdown: float) -> None:
        """Queue a (re)build of the study's ImagingStudy in `countdown` seconds; raise QueueUnavailable."""
        self._send(STUDY_CHANGED, study_instance_uid, countdown)

    def enqueue_fhir_push(self, study_instance_uid: str, countdown: float = 0.0) -> None:
        """Queue a push of the study's current ImagingStudy in `countdown` seconds; raise QueueUnavailable."""
        self._send(FHIR_PUSH, study_instance_uid, countdown)

    def _send(self, name: str, argument: str, countdown: float = 0.0) -> None:
        try:
            # Publishing is synchronous: when send_task returns, Redis holds the message.
            self.app.send_task(
                name,
                args=[argument],
                queue=INDEX_QUEUE,
                countdown=countdown or None,
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.3, "interval_max": 1.0},
            )
        except (KombuError, OperationalError, RedisError, OSError) as exc:
            raise QueueUnavailable(f"task broker unavailable: {exc}") from exc

    def warm(self) -> None:
        """Load what the first publish would load, without publishing; raise QueueUnavailable when down.

        Celery imports its result backend, builds its task sender and declares the queue on a producer's
        connection at the first send_task: ~50 ms, paid by the first C-STORE (which publishes at once) or
        the first index batch of each process. After this the first publish costs what the others do.
        """
        try:
            _ = self.app.backend, self.app.amqp.send_task_message
            with self.app.producer_or_acquire() as producer:
                producer.maybe_declare(self.app.amqp.queues[INDEX_QUEUE])
        except (KombuError, OperationalError, RedisError, OSError) as exc:
            raise QueueUnavailable(f"task broker unavailable: {exc}") from exc

    def check(self) -> None:
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
        except (KombuError, OperationalError, RedisError, OSError) as exc:
            raise QueueUnavailable(f"task broker unavailable: {exc}") from exc
