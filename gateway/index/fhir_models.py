"""Index tables of the FHIR side: versioned resources, their search tokens, pending study changes, push state."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.index.models import Base


class FhirResource(Base):
    """The current version of one FHIR resource (ImagingStudy, Patient) with its search columns."""

    __tablename__ = "fhir_resources"
    __table_args__ = (Index("uq_fhir_resources_type_id", "resource_type", "resource_id", unique=True),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String())
    resource_id: Mapped[str] = mapped_column(String())
    # FHIR R4 2.42 (Meta): versionId changes, and lastUpdated moves, only when the content changes.
    version_id: Mapped[int] = mapped_column(Integer, default=0)
    last_updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # SHA-256 of the canonical JSON without `meta`: equal hash = same content = no new version.
    content_hash: Mapped[str] = mapped_column(String(), default="")
    status: Mapped[str | None] = mapped_column(String(), index=True)
    # ImagingStudy.started as a UTC interval [low, high) at its precision (FHIR R4 search: date ranges).
    started_low: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    started_high: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    document: Mapped[str] = mapped_column(Text, default="")


class FhirResourceVersion(Base):
    """Every version a resource has had (FHIR vread), the current one included."""

    __tablename__ = "fhir_resource_versions"
    __table_args__ = (Index("uq_fhir_resource_versions", "resource_pk", "version_id", unique=True),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = mapped_column(ForeignKey("fhir_resources.pk"), index=True)
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    document: Mapped[str] = mapped_column(Text)


class FhirSearchToken(Base):
    """One token search value of a resource (identifier, modality, patient, ...): `system|value`."""

    __tablename__ = "fhir_search_tokens"
    __table_args__ = (Index("ix_fhir_search_tokens_lookup", "parameter", "value"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = mapped_column(ForeignKey("fhir_resources.pk"), index=True)
    parameter: Mapped[str] = mapped_column(String())
    system: Mapped[str] = mapped_column(String(), default="")
    value: Mapped[str] = mapped_column(String())


class FhirStudyChange(Base):
    """A study changed and waits to be quiet for the debounce time before its ImagingStudy is rebuilt."""

    __tablename__ = "fhir_study_changes"

    study_instance_uid: Mapped[str] = mapped_column(String(), primary_key=True)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When the study_changed task already queued for it is due; None: no task queued.
    task_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FhirPushState(Base):
    """Where pushing one resource to the EHR's FHIR server stands: last version sent, retries, last outcome."""

    __tablename__ = "fhir_push_states"
    __table_args__ = (Index("uq_fhir_push_states_type_id", "resource_type", "resource_id", unique=True),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String())
    resource_id: Mapped[str] = mapped_column(String())
    version_id: Mapped[int] = mapped_column(Integer, default=0)
    pushed_version: Mapped[int | None] = mapped_column(Integer)
    # pending | retrying | sent | failed
    status: Mapped[str] = mapped_column(String(), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # The server's OperationOutcome (JSON) when it rejected the resource.
    outcome: Mapped[str | None] = mapped_column(Text)
    first_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
