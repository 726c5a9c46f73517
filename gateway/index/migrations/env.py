"""Alembic environment: runs on the connection handed over by gateway.index.db.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from gateway.index import ae_models, fhir_models  # noqa: F401  (register the AE registry and FHIR tables on Base.metadata)
from gateway.index.models import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic` run by hand without our migrate()
    raise RuntimeError("run migrations with `dicom-gateway migrate`")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
