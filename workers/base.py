"""The one task decorator: house defaults for retries, dead letters and log context."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import structlog
from celery import Celery, Task

from gateway.errors import GatewayError, IndexUnavailable, QueueUnavailable, StorageUnavailable
from gateway.services import Services

log = structlog.get_logger(__name__)

# Only these are worth a retry; any other GatewayError is permanent and goes to the dead letters at once.
TRANSIENT_ERRORS: tuple[type[GatewayError], ...] = (StorageUnavailable, IndexUnavailable, QueueUnavailable)

TaskBody = Callable[[Services, str], object]


def backoff(retries: int, maximum: int) -> float:
    """Exponential backoff with full jitter: 1, 2, 4, ... seconds, capped at `maximum`."""
    return random.uniform(0.5, 1.0) * min(float(maximum), 2.0**retries)


def log_argument(argument: str) -> str:
    """The task's argument as its log lines carry it: a batch's first key and how many follow.

    A batch of 200 keys is ~26 KB of text; every line of its task repeated it. Dead letters keep it whole.
    """
    first, _, rest = argument.partition("\n")
    more = sum(1 for line in rest.split("\n") if line)
    return f"{first} (+{more} more)" if more else first


def gateway_task(app: Celery, name: str, services: Callable[[], Services]) -> Callable[[TaskBody], Task[Any, Any]]:
    """Register `body(services, argument)` as a Celery task with acks_late, retries and dead letters."""

    def decorator(body: TaskBody) -> Task[Any, Any]:
        # shared=False: the task belongs to this app and its services (Celery would otherwise hand it to
        # every app made later in the process, with the first one's services).
        @app.task(name=name, bind=True, acks_late=True, reject_on_worker_lost=True, shared=False)
        def run(self: Task[Any, Any], argument: str) -> object:
            current = services()
            settings = current.settings
            retries = int(self.request.retries or 0)
            structlog.contextvars.bind_contextvars(task=name, task_id=self.request.id, argument=log_argument(argument))
            try:
                return body(current, argument)
            except TRANSIENT_ERRORS as exc:
                if retries >= settings.task_max_retries:
                    dead_letter(current, name, self.request.id, argument, exc, retries)
                    return None
                delay = backoff(retries, settings.task_retry_backoff_max)
                log.warning("task.retry", reason=str(exc), retries=retries, countdown=round(delay, 2))
                raise self.retry(exc=exc, countdown=delay, max_retries=settings.task_max_retries) from exc
            except Exception as exc:
                # Foreseen failures (GatewayError) and surprises alike go to the dead letters, not lost;
                # a surprise (a bug, a library's) also leaves its traceback in the log.
                if not isinstance(exc, GatewayError):
                    log.exception("task.unexpected_error")
                dead_letter(current, name, self.request.id, argument, exc, retries)
                return None
            finally:
                structlog.contextvars.unbind_contextvars("task", "task_id", "argument")

        task: Task[Any, Any] = run
        return task

    return decorator


def dead_letter(
    services: Services, name: str, task_id: str | None, argument: str, exc: Exception, retries: int
) -> None:
    """Record a task (or one key of a batch) that will not be retried, with why."""
    log.error("task.dead_letter", reason=str(exc), error=type(exc).__name__, retries=retries)
    services.repository.record_dead_letter(name, task_id or "", argument, f"{type(exc).__name__}: {exc}", retries)
