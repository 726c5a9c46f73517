"""Debounce of study changes: rebuild a study's ImagingStudy once it has been quiet for a while, and only once.

Every indexed instance notes a change (`changed_at`); the first change schedules one study_changed task for
`changed_at + debounce`. When the task runs and the study changed again meanwhile, it schedules itself for the
new quiet time instead of building; when the study is quiet it removes the row and builds. A change that arrives
during the build inserts a new row and a new task, so nothing is missed; duplicates only cost an unchanged build.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from gateway.errors import IndexUnavailable
from gateway.fhir.store import utc
from gateway.index.db import make_session_factory
from gateway.index.fhir_models import FhirStudyChange

# A task due this long ago that has not run is presumed lost (e.g. its message was purged): schedule another.
# Workers busy with a backlog may run it later still; the duplicate only costs an unchanged build.
LOST_AFTER = timedelta(minutes=15)
# Tolerance for clocks of different workers when telling "my own schedule" from "a later one".
CLOCK_SLACK = timedelta(seconds=1)

Schedule = Callable[[float], None]


class StudyChanges:
    """The fhir_study_changes table: which studies changed, since when, and whether a task is scheduled."""

    def __init__(self, engine: Engine, debounce: float, max_countdown: float = 3600.0) -> None:
        self.sessions: sessionmaker[Session] = make_session_factory(engine)
        self.debounce = timedelta(seconds=debounce)
        # Longer waits are taken in steps: the task runs early, finds the study not quiet yet, and waits again.
        self.max_countdown = timedelta(seconds=max_countdown)
        self._postgres = engine.dialect.name == "postgresql"

    def note(self, study_instance_uid: str, now: datetime, schedule: Schedule) -> None:
        """Record that the study changed at `now`; call `schedule(countdown)` when no task is scheduled for it.

        `schedule` runs inside the transaction: when it raises (broker down), the change is not recorded either
        and the caller's retry notes it again. Raises IndexUnavailable when the database cannot be reached.
        """
        insert_row = (pg_insert if self._postgres else sqlite_insert)(FhirStudyChange).values(
            study_instance_uid=study_instance_uid, changed_at=now, task_due_at=None
        )
        try:
            with self.sessions.begin() as session:
                session.execute(
                    insert_row.on_conflict_do_update(index_elements=["study_instance_uid"], set_={"changed_at": now})
                )
                query = select(FhirStudyChange.task_due_at).where(
                    FhirStudyChange.study_instance_uid == study_instance_uid
                )
                due = session.execute(query.with_for_update() if self._postgres else query).scalar_one()
                if due is not None and utc(due) > now - LOST_AFTER:
                    return
                wait = min(self.debounce, self.max_countdown)
                session.execute(
                    update(FhirStudyChange)
                    .where(FhirStudyChange.study_instance_uid == study_instance_uid)
                    .values(task_due_at=now + wait)
                )
                schedule(wait.total_seconds())
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc

    def take(self, study_instance_uid: str, now: datetime, schedule: Schedule) -> bool:
        """Return True when the study should be built now (quiet long enough, or nothing recorded).

        Otherwise reschedule through `schedule(countdown)` for the end of the quiet time, unless another task
        is already due later (then this one just ends). Raises IndexUnavailable when the database is down.
        """
        try:
            with self.sessions.begin() as session:
                if not self._postgres:  # write first: SQLite takes its write lock now, no read-to-write upgrade
                    session.execute(
                        update(FhirStudyChange)
                        .where(FhirStudyChange.study_instance_uid == study_instance_uid)
                        .values(task_due_at=FhirStudyChange.task_due_at)
                    )
                query = select(FhirStudyChange).where(FhirStudyChange.study_instance_uid == study_instance_uid)
                row = session.execute(query.with_for_update() if self._postgres else query).scalar_one_or_none()
                if row is None:
                    # Built already by a duplicate task, or queued without a row: building again is harmless.
                    return True
                quiet_at = utc(row.changed_at) + self.debounce
                if quiet_at <= now:
                    session.execute(
                        delete(FhirStudyChange).where(
                            FhirStudyChange.study_instance_uid == study_instance_uid,
                            FhirStudyChange.changed_at == row.changed_at,
                        )
                    )
                    return True
                if row.task_due_at is not None and utc(row.task_due_at) > now + CLOCK_SLACK:
                    return False  # another task is scheduled for later: it will build
                wait = min(quiet_at - now, self.max_countdown)
                row.task_due_at = now + wait
                schedule(wait.total_seconds())
                return False
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc
