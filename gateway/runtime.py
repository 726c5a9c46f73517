"""Tuning of the gateway's long-running processes (SCP, API workers, index workers) once they have started."""

from __future__ import annotations

import gc

import structlog

log = structlog.get_logger(__name__)


def settle_heap() -> None:
    """Collect the garbage start-up left, then move every object still alive out of the cyclic collector's view.

    Why: a started process holds ~150,000 long-lived objects (pydicom's dictionaries, SQLAlchemy, Celery,
    pynetdicom), and each full collection walked them all: ~100 ms during which the process did nothing
    else, a stall of every association of an SCP process or of a batch in a worker, due soon after
    start, i.e. in the first push. Frozen objects are still freed by reference counting; only a cycle
    among them would never be collected. (Python's documentation suggests the same for pre-fork servers.)
    """
    gc.collect()
    gc.freeze()
    log.debug("runtime.heap_settled", frozen=gc.get_freeze_count())
