"""QIDO-RS / C-FIND matching: normalised person name columns, AcquisitionDateTime, indexes on every matching key

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 09:00:00.000000
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _normalize_person_name(value: str | None) -> str | None:
    # Frozen copy of gateway.dicom.attributes.normalize_person_name as of this revision: a migration must
    # not change meaning when the application code changes later.
    if value is None:
        return None
    groups = ["^".join(part.strip() for part in group.split("^")).rstrip("^") for group in value.upper().split("=")]
    return "=".join(groups).rstrip("=") or None


def _backfill() -> None:
    """Fill the new columns of rows indexed before this revision (the index is rebuilt from it, not objects)."""
    connection = op.get_bind()
    patients = sa.table("patients", sa.column("pk"), sa.column("patient_name"), sa.column("patient_name_upper"))
    for pk, name in connection.execute(sa.select(patients.c.pk, patients.c.patient_name)).all():
        upper = _normalize_person_name(name)
        if upper is not None:
            connection.execute(patients.update().where(patients.c.pk == pk).values(patient_name_upper=upper))
    studies = sa.table(
        "studies",
        sa.column("pk"),
        sa.column("referring_physician_name"),
        sa.column("referring_physician_name_upper"),
    )
    for pk, name in connection.execute(sa.select(studies.c.pk, studies.c.referring_physician_name)).all():
        upper = _normalize_person_name(name)
        if upper is not None:
            connection.execute(studies.update().where(studies.c.pk == pk).values(referring_physician_name_upper=upper))
    instances = sa.table("instances", sa.column("pk"), sa.column("metadata_json"), sa.column("acquisition_date_time"))
    for pk, document in connection.execute(sa.select(instances.c.pk, instances.c.metadata_json)).all():
        values = json.loads(document or "{}").get("0008002A", {}).get("Value") or []
        if values and isinstance(values[0], str) and values[0].strip():
            connection.execute(
                instances.update().where(instances.c.pk == pk).values(acquisition_date_time=values[0].strip())
            )


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("patient_name_upper", sa.String(), nullable=True))
        batch_op.create_index(batch_op.f("ix_patients_patient_name_upper"), ["patient_name_upper"], unique=False)
        batch_op.create_index(batch_op.f("ix_patients_patient_sex"), ["patient_sex"], unique=False)
        batch_op.create_index(batch_op.f("ix_patients_issuer_of_patient_id"), ["issuer_of_patient_id"], unique=False)

    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("referring_physician_name_upper", sa.String(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_studies_referring_physician_name_upper"), ["referring_physician_name_upper"], unique=False
        )

    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("acquisition_date_time", sa.String(), nullable=True))
        batch_op.create_index(batch_op.f("ix_instances_acquisition_date_time"), ["acquisition_date_time"], unique=False)
        batch_op.create_index(batch_op.f("ix_instances_rows"), ["rows"], unique=False)
        batch_op.create_index(batch_op.f("ix_instances_columns"), ["columns"], unique=False)
        batch_op.create_index(batch_op.f("ix_instances_number_of_frames"), ["number_of_frames"], unique=False)

    _backfill()


def downgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instances_number_of_frames"))
        batch_op.drop_index(batch_op.f("ix_instances_columns"))
        batch_op.drop_index(batch_op.f("ix_instances_rows"))
        batch_op.drop_index(batch_op.f("ix_instances_acquisition_date_time"))
        batch_op.drop_column("acquisition_date_time")

    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_studies_referring_physician_name_upper"))
        batch_op.drop_column("referring_physician_name_upper")

    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patients_issuer_of_patient_id"))
        batch_op.drop_index(batch_op.f("ix_patients_patient_sex"))
        batch_op.drop_index(batch_op.f("ix_patients_patient_name_upper"))
        batch_op.drop_column("patient_name_upper")
