"""AE registry (remote_aes), association log and counters for DIMSE administration

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    now = sa.text("(CURRENT_TIMESTAMP)")
    op.create_table(
        "remote_aes",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("allow_store", sa.Boolean(), nullable=False),
        sa.Column("allow_find", sa.Boolean(), nullable=False),
        sa.Column("allow_move", sa.Boolean(), nullable=False),
        sa.Column("allow_get", sa.Boolean(), nullable=False),
        sa.Column("allow_destination", sa.Boolean(), nullable=False),
        sa.Column("tls", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("ae_title"),
    )
    op.create_table(
        "association_log",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("peer_address", sa.String(), nullable=False),
        sa.Column("peer_port", sa.Integer(), nullable=False),
        sa.Column("calling_ae", sa.String(), nullable=False),
        sa.Column("called_ae", sa.String(), nullable=False),
        sa.Column("tls", sa.Boolean(), nullable=False),
        sa.Column("services", sa.String(), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("association_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_association_log_started_at"), ["started_at"], unique=False)
    op.create_table(
        "association_counters",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("association_counters")
    with op.batch_alter_table("association_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_association_log_started_at"))
    op.drop_table("association_log")
    op.drop_table("remote_aes")
