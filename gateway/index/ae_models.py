"""Index tables of the DIMSE administration: the remote AE registry and the association log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from gateway.index.models import Base


class RemoteAE(Base):
    """A remote Application Entity the gateway knows: where it is and what it may do."""

    __tablename__ = "remote_aes"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # PS3.5 6.2 AE VR, trimmed; AE titles are case-sensitive, so the unique key is the exact text.
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(), default="")
    allow_store: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_find: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_move: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_get: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_destination: Mapped[bool] = mapped_column(Boolean, default=True)
    tls: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # "config": declared in the settings and kept in step with them at start-up; "admin": CLI or REST.
    source: Mapped[str] = mapped_column(String(16), default="admin")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AssociationRecord(Base):
    """One finished (or rejected) association of the SCP, kept for `GET /api/status`."""

    __tablename__ = "association_log"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    peer_address: Mapped[str] = mapped_column(String())
    peer_port: Mapped[int] = mapped_column(Integer)
    calling_ae: Mapped[str] = mapped_column(String())
    called_ae: Mapped[str] = mapped_column(String())
    tls: Mapped[bool] = mapped_column(Boolean, default=False)
    services: Mapped[str] = mapped_column(String(), default="")  # e.g. "C-FIND,C-MOVE"
    instances: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    result: Mapped[str] = mapped_column(String(16))  # released, aborted, rejected
    reason: Mapped[str] = mapped_column(String(), default="")


class AssociationCounter(Base):
    """A running count since the index was created (accepted, rejected by reason), never pruned."""

    __tablename__ = "association_counters"

    name: Mapped[str] = mapped_column(String(), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
