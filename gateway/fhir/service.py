"""The FHIR service: note study changes, (re)build and store ImagingStudy versions, push them to the EHR."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Engine

from gateway.config import Settings
from gateway.fhir.changes import StudyChanges
from gateway.fhir.errors import PushRejected, PushUnavailable
from gateway.fhir.imagingstudy import MappingOptions, imaging_study, withdrawn
from gateway.fhir.patient import patient_resource
from gateway.fhir.push import FhirPushClient, PushStates, backoff, push_body
from gateway.fhir.source import load_study
from gateway.fhir.store import FhirStore, search_terms
from gateway.index.db import make_session_factory
from gateway.storage.keys import parse_key

if TYPE_CHECKING:
    from gateway.services import Services

log = structlog.get_logger(__name__)

IMAGING_STUDY = "ImagingStudy"


class FhirTaskQueue(Protocol):
    """What the FHIR service needs from the broker."""

    def enqueue_study_changed(self, study_instance_uid: str, countdown: float) -> None:
        """Queue study_changed for the study in `countdown` seconds; raise QueueUnavailable."""
        ...

    def enqueue_fhir_push(self, study_instance_uid: str, countdown: float = 0.0) -> None:
        """Queue a push of the study's ImagingStudy in `countdown` seconds; raise QueueUnavailable."""
        ...


def gateway_base_url(settings: Settings) -> str:
    """Our external base URL: GATEWAY_PUBLIC_URL, else the configured HTTP address (a wildcard: the host name)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = socket.getfqdn() if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.http_port}"


def mapping_options(settings: Settings) -> MappingOptions:
    """The mapping options the settings give: version, our DICOMweb base URL, the fallback time zone."""
    zone = ZoneInfo(settings.fhir_timezone) if settings.fhir_timezone else None
    return MappingOptions(f"{gateway_base_url(settings)}/dicomweb", settings.fhir_version, zone)


class FhirService:
    """Builds ImagingStudy (and Patient) resources from the index, versions them, and pushes them."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        queue: FhirTaskQueue,
        clock: Callable[[], datetime] | None = None,
        push_client: FhirPushClient | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.options = mapping_options(settings)
        self.store = FhirStore(engine)
        # A task held back longer than the broker's visibility timeout would be delivered twice: wait in steps.
        self.changes = StudyChanges(engine, settings.fhir_debounce_seconds, settings.broker_visibility_timeout / 2)
        self.push_states = PushStates(engine)
        self._index_sessions = make_session_factory(engine)
        self._clock = clock or (lambda: datetime.now(UTC))
        # Studies noted lately (monotonic time), to skip re-noting within a window shorter than the debounce.
        self._noted: dict[str, float] = {}
        self._note_window = min(1.0, settings.fhir_debounce_seconds / 2)
        self._push_client = push_client

    @classmethod
    def from_services(cls, services: Services) -> FhirService:
        """Build the FHIR service on the gateway's services (their engine and queue)."""
        return cls(services.settings, services.engine, services.queue)

    def close(self) -> None:
        """Close the push client's connections."""
        if self._push_client is not None:
            self._push_client.close()

    def instance_indexed(self, key: str) -> None:
        """Note that the study of the object at `key` changed (called after indexing it)."""
        self.note_change(parse_key(key, self.settings.storage_prefix).study_instance_uid)

    def note_change(self, study_instance_uid: str) -> None:
        """Schedule a debounced rebuild of the study; raise QueueUnavailable or IndexUnavailable (transient).

        A study this process noted less than `_note_window` ago (under half the debounce) is not noted again:
        the rebuild that note scheduled runs at least a debounce after it, so it sees this change too. During
        a push of a large study this saves a database transaction per indexed batch.
        """
        now = time.monotonic()
        if now - self._noted.get(study_instance_uid, -math.inf) < self._note_window:
            return
        if len(self._noted) > 10_000:
            self._noted.clear()
        self.changes.note(
            study_instance_uid, self._clock(), lambda countdown: self._schedule(study_instance_uid, countdown)
        )
        self._noted[study_instance_uid] = now

    def _schedule(self, study_instance_uid: str, countdown: float) -> None:
        self.queue.enqueue_study_changed(study_instance_uid, countdown)

    def study_changed(self, study_instance_uid: str) -> str:
        """Run the debounced task: rebuild when the study has been quiet long enough, else wait again.

        Returns "deferred" or the outcome of build(). Raises IndexUnavailable / QueueUnavailable (transient).
        """
        quiet = self.changes.take(
            study_instance_uid, self._clock(), lambda countdown: self._schedule(study_instance_uid, countdown)
        )
        return self.build(study_instance_uid) if quiet else "deferred"

    def build(self, study_instance_uid: str) -> str:
        """(Re)build the study's ImagingStudy and its Patient; store a new version only if the content changed.

        A study no longer in the index keeps its last content with status entered-in-error. Returns "created",
        "updated", "unchanged" or "absent"; raises InvalidResource (a mapping bug) or IndexUnavailable.
        """
        version = self.settings.fhir_version
        zone = self.options.zone
        now = self._clock()
        snapshot = load_study(self._index_sessions, study_instance_uid)
        if snapshot is None:
            existing = self.store.find(IMAGING_STUDY, study_instance_uid)
            if existing is None:
                return "absent"
            resource = withdrawn(existing, version)
        else:
            patient = patient_resource(snapshot.patient, snapshot.attributes, version)
            if patient is not None:
                self.store.save(patient, search_terms(patient, zone), now)
            resource = imaging_study(snapshot, self.options)
        saved = self.store.save(resource, search_terms(resource, zone), now)
        log.info(
            "fhir.imaging_study",
            study=study_instance_uid,
            version=saved.version_id,
            changed=saved.changed,
            status=resource["status"],
            instances=resource.get("numberOfInstances"),
        )
        if self.settings.fhir_push_url:
            state = self.push_states.get(IMAGING_STUDY, study_instance_uid)
            # Also after a retried build that found nothing new: the first attempt may have died before queuing.
            if saved.changed or state is None or state.version_id < saved.version_id:
                self.queue.enqueue_fhir_push(study_instance_uid)
        if not saved.changed:
            return "unchanged"
        return "created" if saved.version_id == 1 else "updated"

    def _client(self) -> FhirPushClient:
        if self._push_client is None:
            token = self.settings.fhir_push_token
            self._push_client = FhirPushClient(
                self.settings.fhir_push_url,
                token.get_secret_value() if token else None,
                self.settings.fhir_push_timeout,
            )
        return self._push_client

    def push_study(self, study_instance_uid: str) -> str:
        """Send the study's current ImagingStudy to the EHR unless that version is there already.

        Transient failures are retried by queuing this task again with backoff, for up to
        GATEWAY_FHIR_PUSH_RETRY_SECONDS; a rejection (4xx) is recorded with the server's OperationOutcome.
        Returns "disabled", "absent", "up-to-date", "sent", "retrying", "rejected" or "failed".
        """
        if not self.settings.fhir_push_url:
            return "disabled"
        resource = self.store.find(IMAGING_STUDY, study_instance_uid)
        if resource is None:
            return "absent"
        version = int(resource["meta"]["versionId"])
        state = self.push_states.get(IMAGING_STUDY, study_instance_uid)
        if state is not None and state.pushed_version is not None and state.pushed_version >= version:
            return "up-to-date"
        bound = log.bind(study=study_instance_uid, version=version, target=self.settings.fhir_push_url)
        try:
            status = self._client().put_imaging_study(study_instance_uid, push_body(resource))
        except PushRejected as exc:
            self.push_states.record(IMAGING_STUDY, study_instance_uid, version, "failed", self._clock(), exc)
            bound.error("fhir.push.rejected", http_status=exc.http_status, reason=str(exc))
            return "rejected"
        except PushUnavailable as exc:
            now = self._clock()
            first = state.first_failure_at if state is not None and state.first_failure_at else now
            if (now - first).total_seconds() >= self.settings.fhir_push_retry_seconds:
                gave_up = self.push_states.record(IMAGING_STUDY, study_instance_uid, version, "failed", now, exc)
                bound.error("fhir.push.gave_up", attempts=gave_up.attempts, since=first.isoformat(), reason=str(exc))
                return "failed"
            retried = self.push_states.record(IMAGING_STUDY, study_instance_uid, version, "retrying", now, exc)
            # Below the broker's visibility timeout, so a delayed task is never delivered twice.
            cap = min(float(self.settings.task_retry_backoff_max), self.settings.broker_visibility_timeout / 2)
            delay = backoff(retried.attempts, cap)
            bound.warning("fhir.push.retry", attempts=retried.attempts, countdown=round(delay, 2), reason=str(exc))
            self.queue.enqueue_fhir_push(study_instance_uid, delay)
            return "retrying"
        self.push_states.record(IMAGING_STUDY, study_instance_uid, version, "sent", self._clock(), http_status=status)
        bound.info("fhir.push.sent", http_status=status)
        return "sent"
