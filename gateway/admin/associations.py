"""The association log: what the SCP processes record about each association, and what admins read back.

SCP and API are separate processes (possibly on separate machines), so the log is kept in the index.
The most recent associations are kept (older rows are pruned); counters are never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.errors import IndexUnavailable
from gateway.index.ae_models import AssociationCounter, AssociationRecord
from gateway.index.db import make_session_factory

log = structlog.get_logger(__name__)

KEEP_RECENT = 1000
PRUNE_EVERY = 100  # writes between two prunings
ACCEPTED = "accepted"
REJECTED_PREFIX = "rejected: "


@dataclass(frozen=True)
class AssociationSummary:
    """One association as the SCP saw it."""

    started_at: datetime
    duration_seconds: float
    peer_address: str
    peer_port: int
    calling_ae: str
    called_ae: str
    tls: bool
    services: tuple[str, ...]
    instances: int
    bytes: int
    result: str  # released, aborted, rejected
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "started_at": self.started_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 3),
            "peer": f"{self.peer_address}:{self.peer_port}",
            "calling_ae": self.calling_ae,
            "called_ae": self.called_ae,
            "tls": self.tls,
            "services": list(self.services),
            "instances": self.instances,
            "bytes": self.bytes,
            "result": self.result,
            "reason": self.reason,
        }


class AssociationLog:
    """Writes one row per association and keeps counters; reads them back for `GET /api/status`."""

    def __init__(self, engine: Engine, keep: int = KEEP_RECENT) -> None:
        self.sessions: sessionmaker[Session] = make_session_factory(engine)
        self.keep = keep
        self._postgres = engine.dialect.name == "postgresql"
        self._written = 0

    def record(self, summary: AssociationSummary) -> None:
        """Store one association; a failure is logged, never raised (the log must not break DIMSE)."""
        counter = REJECTED_PREFIX + summary.reason if summary.result == "rejected" else ACCEPTED
        try:
            with self.sessions.begin() as session:
                session.add(
                    AssociationRecord(
                        started_at=summary.started_at,
                        duration_seconds=summary.duration_seconds,
                        peer_address=summary.peer_address,
                        peer_port=summary.peer_port,
                        calling_ae=summary.calling_ae,
                        called_ae=summary.called_ae,
                        tls=summary.tls,
                        services=",".join(summary.services),
                        instances=summary.instances,
                        bytes=summary.bytes,
                        result=summary.result,
                        reason=summary.reason[:200],
                    )
                )
                insert = pg_insert if self._postgres else sqlite_insert
                session.execute(insert(AssociationCounter).values(name=counter, count=0).on_conflict_do_nothing())
                session.execute(
                    update(AssociationCounter)
                    .where(AssociationCounter.name == counter)
                    .values(count=AssociationCounter.count + 1)
                )
                self._written += 1
                if self._written % PRUNE_EVERY == 0:
                    newest = session.execute(select(func.max(AssociationRecord.pk))).scalar()
                    if newest is not None:
                        session.execute(delete(AssociationRecord).where(AssociationRecord.pk <= newest - self.keep))
        except SQLAlchemyError as exc:
            log.warning("dimse.association.log_failed", reason=str(exc)[:200])

    def recent(self, limit: int = 50) -> list[AssociationSummary]:
        """The most recent associations, newest first; raises IndexUnavailable."""
        try:
            with self.sessions() as session:
                rows = session.scalars(select(AssociationRecord).order_by(AssociationRecord.pk.desc()).limit(limit))
                return [
                    AssociationSummary(
                        started_at=row.started_at,
                        duration_seconds=row.duration_seconds,
                        peer_address=row.peer_address,
                        peer_port=row.peer_port,
                        calling_ae=row.calling_ae,
                        called_ae=row.called_ae,
                        tls=row.tls,
                        services=tuple(s for s in row.services.split(",") if s),
                        instances=row.instances,
                        bytes=row.bytes,
                        result=row.result,
                        reason=row.reason,
                    )
                    for row in rows
                ]
        except SQLAlchemyError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc}") from exc

    def counters(self) -> tuple[int, dict[str, int]]:
        """(accepted associations, rejected associations by reason) since the index was created."""
        try:
            with self.sessions() as session:
                rows = session.execute(select(AssociationCounter.name, AssociationCounter.count)).all()
        except SQLAlchemyError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc}") from exc
        accepted = sum(count for name, count in rows if name == ACCEPTED)
        rejected = {name.removeprefix(REJECTED_PREFIX): count for name, count in rows if name != ACCEPTED}
        return accepted, rejected
