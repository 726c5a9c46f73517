"""Push ImagingStudy versions to an EHR's FHIR server (conditional update), and keep where each push stands."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from gateway import __version__
from gateway.errors import IndexUnavailable
from gateway.fhir.errors import PushRejected, PushUnavailable
from gateway.fhir.imagingstudy import DICOM_UID_SYSTEM
from gateway.fhir.store import utc
from gateway.index.db import make_session_factory
from gateway.index.fhir_models import FhirPushState

FHIR_JSON = "application/fhir+json"
# RFC 9110 15.5.9 / 15.5.18 / RFC 8470 / RFC 6585: worth retrying as is; every other 4xx is the resource's fault.
_TRANSIENT_4XX = frozenset({408, 425, 429})
_OUTCOME_LIMIT = 8000


def push_body(resource: dict[str, Any]) -> dict[str, Any]:
    """Return what we send: the resource without our id and meta, and without references only we can resolve.

    FHIR R4 http.html#cond-update: with no id in the body the server updates the one match or creates the
    resource under its own id; the EHR keeps its own versions. The subject stays a logical reference (identifier).
    """
    body = {key: value for key, value in resource.items() if key not in ("id", "meta")}
    subject = dict(body.get("subject", {}))
    if str(subject.get("reference", "")).startswith("Patient/") and "identifier" in subject:
        subject.pop("reference")
        body["subject"] = subject
    return body


class FhirPushClient:
    """HTTP client for one FHIR server: conditional update of ImagingStudy by its Study Instance UID."""

    def __init__(
        self, base_url: str, token: str | None, timeout: float, transport: httpx.BaseTransport | None = None
    ) -> None:
        headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON, "User-Agent": f"dicom-gateway/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        """Close pooled connections."""
        self._client.close()

    def put_imaging_study(self, study_instance_uid: str, resource: dict[str, Any]) -> int:
        """PUT `[base]/ImagingStudy?identifier=urn:dicom:uid|urn:oid:<uid>`; return the HTTP status (200/201).

        Raises PushUnavailable (unreachable, timeout, 408/425/429/5xx) or PushRejected (any other status).
        """
        identifier = f"{DICOM_UID_SYSTEM}|urn:oid:{study_instance_uid}"
        try:
            response = self._client.put(
                f"{self.base_url}/ImagingStudy", params={"identifier": identifier}, content=orjson.dumps(resource)
            )
        except httpx.HTTPError as exc:
            raise PushUnavailable(f"FHIR server unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code in (200, 201):
            return response.status_code
        outcome = response.text[:_OUTCOME_LIMIT] or None
        message = f"FHIR server answered {response.status_code}: {_diagnostics(outcome)}"
        if response.status_code in _TRANSIENT_4XX or response.status_code >= 500:
            raise PushUnavailable(message, response.status_code, outcome)
        raise PushRejected(message, response.status_code, outcome)


def _diagnostics(outcome: str | None) -> str:
    """The first issue's diagnostics of an OperationOutcome, or the start of whatever the server sent."""
    if not outcome:
        return "(empty body)"
    try:
        parsed = orjson.loads(outcome)
        issue = parsed.get("issue", [{}])[0]
        return str(issue.get("diagnostics") or issue.get("details", {}).get("text") or issue.get("code"))[:300]
    except (orjson.JSONDecodeError, AttributeError, IndexError, TypeError):
        return outcome[:300]


def backoff(attempts: int, maximum: float) -> float:
    """Exponential backoff with jitter: about 1, 2, 4, ... seconds, capped at `maximum`."""
    return random.uniform(0.5, 1.0) * min(maximum, 2.0 ** max(attempts - 1, 0))


@dataclass(frozen=True)
class PushState:
    """One row of fhir_push_states, detached from the session."""

    resource_type: str
    resource_id: str
    version_id: int
    pushed_version: int | None
    status: str
    attempts: int
    http_status: int | None
    error: str | None
    outcome: str | None
    first_failure_at: datetime | None
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        """The state as the admin API shows it."""
        return {
            "resourceType": self.resource_type,
            "id": self.resource_id,
            "versionId": self.version_id,
            "pushedVersion": self.pushed_version,
            "status": self.status,
            "attempts": self.attempts,
            "httpStatus": self.http_status,
            "error": self.error,
            "outcome": orjson.loads(self.outcome) if self.outcome and self.outcome.startswith("{") else self.outcome,
            "firstFailureAt": self.first_failure_at.isoformat() if self.first_failure_at else None,
            "updatedAt": self.updated_at.isoformat(),
        }


def _state(row: FhirPushState) -> PushState:
    return PushState(
        row.resource_type,
        row.resource_id,
        row.version_id,
        row.pushed_version,
        row.status,
        row.attempts,
        row.http_status,
        row.error,
        row.outcome,
        utc(row.first_failure_at) if row.first_failure_at else None,
        utc(row.updated_at),
    )


class PushStates:
    """The fhir_push_states table: one row per pushed resource."""

    def __init__(self, engine: Engine) -> None:
        self.sessions: sessionmaker[Session] = make_session_factory(engine)
        self._postgres = engine.dialect.name == "postgresql"

    def get(self, resource_type: str, resource_id: str) -> PushState | None:
        """Return the push state of a resource, or None when it was never pushed."""
        try:
            with self.sessions() as session:
                row = session.execute(
                    select(FhirPushState).where(
                        FhirPushState.resource_type == resource_type, FhirPushState.resource_id == resource_id
                    )
                ).scalar_one_or_none()
                return _state(row) if row is not None else None
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc

    def record(
        self,
        resource_type: str,
        resource_id: str,
        version_id: int,
        status: str,
        now: datetime,
        failure: PushUnavailable | PushRejected | None = None,
        http_status: int | None = None,
    ) -> PushState:
        """Record an attempt's outcome (`sent`, `retrying` or `failed`) and return the new state."""
        values: dict[str, Any] = {"version_id": version_id, "status": status, "updated_at": now}
        if failure is None:
            values.update(
                pushed_version=version_id, attempts=0, http_status=http_status, error=None, first_failure_at=None
            )
        else:
            values.update(http_status=failure.http_status, error=str(failure)[:2000], outcome=failure.outcome)
        insert_row = (pg_insert if self._postgres else sqlite_insert)(FhirPushState).values(
            **{"attempts": 0, **values, "resource_type": resource_type, "resource_id": resource_id}
        )
        key = (FhirPushState.resource_type == resource_type, FhirPushState.resource_id == resource_id)
        try:
            with self.sessions.begin() as session:
                session.execute(
                    insert_row.on_conflict_do_update(index_elements=["resource_type", "resource_id"], set_=values)
                )
                if failure is not None:
                    session.execute(update(FhirPushState).where(*key).values(attempts=FhirPushState.attempts + 1))
                    session.execute(
                        update(FhirPushState)
                        .where(*key, FhirPushState.first_failure_at.is_(None))
                        .values(first_failure_at=now)
                    )
                row = session.execute(select(FhirPushState).where(*key)).scalar_one()
                return _state(row)
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc

    def list(self, status: str | None = None, limit: int = 100) -> list[PushState]:
        """Return push states, most recently updated first, optionally only those with `status`."""
        query = select(FhirPushState).order_by(FhirPushState.updated_at.desc(), FhirPushState.pk.desc()).limit(limit)
        if status:
            query = query.where(FhirPushState.status == status)
        try:
            with self.sessions() as session:
                return [_state(row) for row in session.execute(query).scalars()]
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc
