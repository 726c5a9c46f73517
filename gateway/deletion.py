"""Deleting studies, series and instances: objects first, then index rows, so a failed delete can be retried.

If the object store fails half-way, the index still lists what remains and a second DELETE finishes
the job; removing rows first would leave objects that a reconcile would bring back.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from gateway.index.repository import IndexRepository
from gateway.index.retrieve import find_instances
from gateway.storage.base import ObjectStore

log = structlog.get_logger(__name__)


class DeletionService:
    """Removes stored instances and everything the index derived from them."""

    def __init__(
        self, store: ObjectStore, repository: IndexRepository, study_changed: Callable[[str], None] | None = None
    ) -> None:
        self.store = store
        self.repository = repository
        self.study_changed = study_changed

    def delete(self, study: str, series: str | None = None, sop: str | None = None) -> list[str]:
        """Delete a study, series or instance; return the SOP Instance UIDs removed.

        Raises NotFound (nothing matches), StorageUnavailable, IndexUnavailable and QueueUnavailable
        (retry later).
        """
        items = find_instances(self.repository.sessions, study, series, sop)
        if self.study_changed is not None:
            # Derived data (the FHIR ImagingStudy) is rebuilt after its debounce, from the index as it
            # will be then; noting the change first means a broker outage fails the DELETE before
            # anything is removed, so a retry still finds the study.
            self.study_changed(study)
        for item in items:
            self.store.delete(item.object_key)
        removed = [item.sop_instance_uid for item in items]
        self.repository.delete_instances(removed)
        log.info("delete.done", study=study, series=series, sop=sop, instances=len(removed))
        return removed
