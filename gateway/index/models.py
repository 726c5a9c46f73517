"""SQLAlchemy 2 models of the index: one row per patient, study, series and instance (PS3.18 QIDO-RS attributes)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base of every index table."""


class Patient(Base):
    """A patient as identified by PatientID plus IssuerOfPatientID."""

    __tablename__ = "patients"
    __table_args__ = (Index("uq_patients_id_issuer", "patient_id", "issuer_of_patient_id", unique=True),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(String(), default="")
    issuer_of_patient_id: Mapped[str] = mapped_column(String(), default="", index=True)
    patient_name: Mapped[str | None] = mapped_column(String(), index=True)
    # PatientName as matched (PS3.4 C.2.2.2.1: PN is case-insensitive): see normalize_person_name.
    patient_name_upper: Mapped[str | None] = mapped_column(String(), index=True)
    patient_birth_date: Mapped[str | None] = mapped_column(String(), index=True)
    patient_sex: Mapped[str | None] = mapped_column(String(), index=True)


class Study(Base):
    """A study with its QIDO-RS study-level attributes and its counts."""

    __tablename__ = "studies"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_instance_uid: Mapped[str] = mapped_column(String(), unique=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.pk"), index=True)
    study_date: Mapped[str | None] = mapped_column(String(), index=True)
    study_time: Mapped[str | None] = mapped_column(String(), index=True)
    accession_number: Mapped[str | None] = mapped_column(String(), index=True)
    referring_physician_name: Mapped[str | None] = mapped_column(String(), index=True)
    referring_physician_name_upper: Mapped[str | None] = mapped_column(String(), index=True)
    study_id: Mapped[str | None] = mapped_column(String(), index=True)
    study_description: Mapped[str | None] = mapped_column(String(), index=True)
    modalities_in_study: Mapped[str] = mapped_column(String(), default="")
    number_of_series: Mapped[int] = mapped_column(Integer, default=0)
    number_of_instances: Mapped[int] = mapped_column(Integer, default=0)
    study_json: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)

    patient: Mapped[Patient] = relationship(lazy="joined")


class Series(Base):
    """A series with its QIDO-RS series-level attributes and its instance count."""

    __tablename__ = "series"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    series_instance_uid: Mapped[str] = mapped_column(String(), unique=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.pk"), index=True)
    modality: Mapped[str | None] = mapped_column(String(), index=True)
    series_number: Mapped[int | None] = mapped_column(Integer, index=True)
    series_description: Mapped[str | None] = mapped_column(String(), index=True)
    performed_procedure_step_start_date: Mapped[str | None] = mapped_column(String(), index=True)
    performed_procedure_step_start_time: Mapped[str | None] = mapped_column(String(), index=True)
    body_part_examined: Mapped[str | None] = mapped_column(String(), index=True)
    number_of_instances: Mapped[int] = mapped_column(Integer, default=0)
    series_json: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)


class Instance(Base):
    """A stored SOP instance: where it lives, its DICOM JSON and its pixel data frame offsets."""

    __tablename__ = "instances"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(), unique=True)
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.pk"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(), index=True)
    instance_number: Mapped[int | None] = mapped_column(Integer, index=True)
    rows: Mapped[int | None] = mapped_column(Integer, index=True)
    columns: Mapped[int | None] = mapped_column(Integer, index=True)
    number_of_frames: Mapped[int | None] = mapped_column(Integer, index=True)
    acquisition_date_time: Mapped[str | None] = mapped_column(String(), index=True)
    transfer_syntax_uid: Mapped[str] = mapped_column(String())
    object_key: Mapped[str] = mapped_column(String())
    size: Mapped[int] = mapped_column(BigInteger)
    # PS3.18 Annex F DICOM JSON of the header, bulk data as BulkDataURI, pixel data excluded.
    metadata_json: Mapped[str] = mapped_column(Text)
    # [[[offset, length], ...] per frame]: the byte ranges of each frame's fragments in the object.
    frame_offsets: Mapped[list[list[list[int]]] | None] = mapped_column(JSON)
    indexed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DeadLetter(Base):
    """A task that failed for good: kept for admins instead of being dropped."""

    __tablename__ = "dead_letters"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_name: Mapped[str] = mapped_column(String(), index=True)
    task_id: Mapped[str] = mapped_column(String())
    argument: Mapped[str] = mapped_column(String(), index=True)
    error: Mapped[str] = mapped_column(Text)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
