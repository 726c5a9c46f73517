"""Versioned FHIR resources in the index: save only on change (new versionId), read, vread and search."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

import orjson
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from gateway.errors import IndexUnavailable, NotFound
from gateway.fhir.search import SearchRequest, clause, parse_date
from gateway.index.db import make_session_factory
from gateway.index.fhir_models import FhirResource, FhirResourceVersion, FhirSearchToken


def utc(value: datetime) -> datetime:
    """Return `value` as an aware UTC datetime (SQLite hands back naive UTC values)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def instant(value: datetime) -> str:
    """Format a FHIR instant (meta.lastUpdated): milliseconds, UTC as Z."""
    return utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class SearchTerms:
    """What a resource is found by: status, `started` as a UTC interval, and (parameter, system, value) tokens."""

    status: str | None = None
    started: tuple[datetime, datetime] | None = None
    tokens: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Saved:
    """The outcome of a save: the current version, when it was made, and whether this save made it."""

    version_id: int
    last_updated: datetime
    changed: bool


def _identifier_tokens(parameter: str, identifier: dict[str, Any]) -> list[tuple[str, str, str]]:
    value = identifier.get("value")
    if not value:
        return []
    tokens = [(parameter, str(identifier.get("system", "")), str(value))]
    assigner = identifier.get("assigner", {}).get("display")
    if assigner and not identifier.get("system"):
        # A local issuer (IssuerOfPatientID, accession issuer) also matches as the system: `HOSP_A|123`.
        tokens.append((parameter, str(assigner), str(value)))
    return tokens


def _codes(value: Any) -> list[tuple[str, str]]:
    codings = value.get("coding", [value]) if isinstance(value, dict) else []
    return [(str(c.get("system", "")), str(c["code"])) for c in codings if isinstance(c, dict) and c.get("code")]


def search_terms(resource: dict[str, Any], zone: tzinfo | None) -> SearchTerms:
    """Derive the search terms of an ImagingStudy or Patient from the resource itself."""
    tokens: list[tuple[str, str, str]] = []
    for identifier in resource.get("identifier", []):
        tokens.extend(_identifier_tokens("identifier", identifier))
    if resource["resourceType"] != "ImagingStudy":
        return SearchTerms(tokens=tuple(tokens))
    subject = resource.get("subject", {})
    if isinstance(subject.get("identifier"), dict):
        tokens.extend(_identifier_tokens("subject-identifier", subject["identifier"]))
    if str(subject.get("reference", "")).startswith("Patient/"):
        tokens.append(("patient", "", subject["reference"].removeprefix("Patient/")))
    modalities = [*resource.get("modality", []), *(s.get("modality") for s in resource.get("series", []))]
    for system, code in sorted({pair for m in modalities for pair in _codes(m)}):
        tokens.append(("modality", system, code))
    started = parse_date(resource["started"], zone) if "started" in resource else None
    return SearchTerms(resource.get("status"), started, tuple(dict.fromkeys(tokens)))


def content_hash(resource: dict[str, Any]) -> str:
    """SHA-256 of the resource's canonical JSON without `meta`: equal hashes, equal content."""
    content = {key: value for key, value in resource.items() if key != "meta"}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


class FhirStore:
    """Reads and writes the fhir_resources, fhir_resource_versions and fhir_search_tokens tables."""

    def __init__(self, engine: Engine) -> None:
        self.sessions: sessionmaker[Session] = make_session_factory(engine)
        self._postgres = engine.dialect.name == "postgresql"

    def save(self, resource: dict[str, Any], terms: SearchTerms, now: datetime) -> Saved:
        """Store `resource` as a new version when its content differs from the current one.

        meta.versionId counts up from 1 and meta.lastUpdated is `now`, both only on change (FHIR R4 Meta).
        Raises IndexUnavailable when the database cannot be reached.
        """
        resource_type, resource_id = str(resource["resourceType"]), str(resource["id"])
        digest = content_hash(resource)
        insert_row = (pg_insert if self._postgres else sqlite_insert)(FhirResource).values(
            resource_type=resource_type, resource_id=resource_id, version_id=0, last_updated=now, content_hash=""
        )
        try:
            with self.sessions.begin() as session:
                # Writing first takes SQLite's write lock at once; FOR UPDATE serializes PostgreSQL writers.
                session.execute(insert_row.on_conflict_do_nothing(index_elements=["resource_type", "resource_id"]))
                query = select(FhirResource.pk, FhirResource.version_id, FhirResource.content_hash).where(
                    FhirResource.resource_type == resource_type, FhirResource.resource_id == resource_id
                )
                if self._postgres:
                    query = query.with_for_update()
                pk, current, current_hash = session.execute(query).one()
                if current_hash == digest:
                    last = session.execute(select(FhirResource.last_updated).where(FhirResource.pk == pk)).scalar_one()
                    return Saved(current, utc(last), changed=False)
                version = current + 1
                body = {key: value for key, value in resource.items() if key not in ("resourceType", "id", "meta")}
                meta = {"versionId": str(version), "lastUpdated": instant(now)}
                document = orjson.dumps({"resourceType": resource_type, "id": resource_id, "meta": meta, **body})
                text = document.decode()
                session.execute(
                    update(FhirResource)
                    .where(FhirResource.pk == pk)
                    .values(
                        version_id=version,
                        last_updated=now,
                        content_hash=digest,
                        status=terms.status,
                        started_low=terms.started[0] if terms.started else None,
                        started_high=terms.started[1] if terms.started else None,
                        document=text,
                    )
                )
                session.execute(
                    insert(FhirResourceVersion).values(
                        resource_pk=pk, version_id=version, last_updated=now, document=text
                    )
                )
                session.execute(delete(FhirSearchToken).where(FhirSearchToken.resource_pk == pk))
                if terms.tokens:
                    session.execute(
                        insert(FhirSearchToken),
                        [{"resource_pk": pk, "parameter": p, "system": s, "value": v} for p, s, v in terms.tokens],
                    )
                return Saved(version, now, changed=True)
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc

    def read(self, resource_type: str, resource_id: str, version_id: int | None = None) -> dict[str, Any]:
        """Return the current (or the given) version of a resource; raise NotFound when there is none."""
        try:
            with self.sessions() as session:
                if version_id is None:
                    document = session.execute(
                        select(FhirResource.document).where(
                            FhirResource.resource_type == resource_type,
                            FhirResource.resource_id == resource_id,
                            FhirResource.version_id > 0,
                        )
                    ).scalar_one_or_none()
                else:
                    document = session.execute(
                        select(FhirResourceVersion.document)
                        .join(FhirResource, FhirResource.pk == FhirResourceVersion.resource_pk)
                        .where(
                            FhirResource.resource_type == resource_type,
                            FhirResource.resource_id == resource_id,
                            FhirResourceVersion.version_id == version_id,
                        )
                    ).scalar_one_or_none()
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc
        if document is None:
            which = f"{resource_type}/{resource_id}" + (f"/_history/{version_id}" if version_id is not None else "")
            raise NotFound(f"{which} is not known")
        result: dict[str, Any] = orjson.loads(document)
        return result

    def find(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """Return the current version of a resource, or None."""
        try:
            return self.read(resource_type, resource_id)
        except NotFound:
            return None

    def search(self, resource_type: str, request: SearchRequest) -> tuple[int, list[dict[str, Any]]]:
        """Return the number of matches and one page of them, in a stable order (first stored first)."""
        conditions = [
            FhirResource.resource_type == resource_type,
            FhirResource.version_id > 0,
            *(clause(c) for c in request.criteria),
        ]
        try:
            with self.sessions() as session:
                total = session.execute(select(func.count(FhirResource.pk)).where(*conditions)).scalar_one()
                documents = (
                    session.execute(
                        select(FhirResource.document)
                        .where(*conditions)
                        .order_by(FhirResource.pk)
                        .offset(request.offset)
                        .limit(request.count)
                    )
                    .scalars()
                    .all()
                    if request.count
                    else []
                )
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc
        return int(total), [orjson.loads(document) for document in documents]
