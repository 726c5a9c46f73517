"""FHIR: versioned resources with search tokens, debounced study changes, push state for the EHR

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fhir_push_states",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("resource_type", sa.String(), nullable=False),
        sa.Column("resource_id", sa.String(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("pushed_version", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("first_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("fhir_push_states", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fhir_push_states_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_fhir_push_states_updated_at"), ["updated_at"], unique=False)
        batch_op.create_index("uq_fhir_push_states_type_id", ["resource_type", "resource_id"], unique=True)

    op.create_table(
        "fhir_resources",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("resource_type", sa.String(), nullable=False),
        sa.Column("resource_id", sa.String(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_hash", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("started_low", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_high", sa.DateTime(timezone=True), nullable=True),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("fhir_resources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fhir_resources_last_updated"), ["last_updated"], unique=False)
        batch_op.create_index(batch_op.f("ix_fhir_resources_started_high"), ["started_high"], unique=False)
        batch_op.create_index(batch_op.f("ix_fhir_resources_started_low"), ["started_low"], unique=False)
        batch_op.create_index(batch_op.f("ix_fhir_resources_status"), ["status"], unique=False)
        batch_op.create_index("uq_fhir_resources_type_id", ["resource_type", "resource_id"], unique=True)

    op.create_table(
        "fhir_study_changes",
        sa.Column("study_instance_uid", sa.String(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("task_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("study_instance_uid"),
    )
    op.create_table(
        "fhir_resource_versions",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("resource_pk", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["resource_pk"], ["fhir_resources.pk"]),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("fhir_resource_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fhir_resource_versions_resource_pk"), ["resource_pk"], unique=False)
        batch_op.create_index("uq_fhir_resource_versions", ["resource_pk", "version_id"], unique=True)

    op.create_table(
        "fhir_search_tokens",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("resource_pk", sa.Integer(), nullable=False),
        sa.Column("parameter", sa.String(), nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["resource_pk"], ["fhir_resources.pk"]),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("fhir_search_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_fhir_search_tokens_lookup", ["parameter", "value"], unique=False)
        batch_op.create_index(batch_op.f("ix_fhir_search_tokens_resource_pk"), ["resource_pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fhir_search_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fhir_search_tokens_resource_pk"))
        batch_op.drop_index("ix_fhir_search_tokens_lookup")
    op.drop_table("fhir_search_tokens")

    with op.batch_alter_table("fhir_resource_versions", schema=None) as batch_op:
        batch_op.drop_index("uq_fhir_resource_versions")
        batch_op.drop_index(batch_op.f("ix_fhir_resource_versions_resource_pk"))
    op.drop_table("fhir_resource_versions")

    op.drop_table("fhir_study_changes")

    with op.batch_alter_table("fhir_resources", schema=None) as batch_op:
        batch_op.drop_index("uq_fhir_resources_type_id")
        batch_op.drop_index(batch_op.f("ix_fhir_resources_status"))
        batch_op.drop_index(batch_op.f("ix_fhir_resources_started_low"))
        batch_op.drop_index(batch_op.f("ix_fhir_resources_started_high"))
        batch_op.drop_index(batch_op.f("ix_fhir_resources_last_updated"))
    op.drop_table("fhir_resources")

    with op.batch_alter_table("fhir_push_states", schema=None) as batch_op:
        batch_op.drop_index("uq_fhir_push_states_type_id")
        batch_op.drop_index(batch_op.f("ix_fhir_push_states_updated_at"))
        batch_op.drop_index(batch_op.f("ix_fhir_push_states_status"))
    op.drop_table("fhir_push_states")
