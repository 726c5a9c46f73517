"""Read side of the index for retrieval (WADO-RS, WADO-URI, later C-MOVE/C-GET): which objects make a study."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVarTuple

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.errors import NotFound
from gateway.index.models import Instance, Series, Study

_Ts = TypeVarTuple("_Ts")


@dataclass(frozen=True)
class StoredInstance:
    """What retrieval needs to know about one instance, without reading its object."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    object_key: str
    size: int
    number_of_frames: int | None
    frame_offsets: list[list[list[int]]] | None


def _scoped(query: Select[*_Ts], study: str, series: str | None, sop: str | None) -> Select[*_Ts]:
    # One order for every retrieval: series number, then instance number, UIDs as tie breakers.
    query = (
        query.join(Series, Instance.series_pk == Series.pk)
        .join(Study, Series.study_pk == Study.pk)
        .where(Study.study_instance_uid == study)
        .order_by(
            Series.series_number.nulls_last(),
            Series.series_instance_uid,
            Instance.instance_number.nulls_last(),
            Instance.sop_instance_uid,
        )
    )
    if series is not None:
        query = query.where(Series.series_instance_uid == series)
    if sop is not None:
        query = query.where(Instance.sop_instance_uid == sop)
    return query


def find_instances(
    sessions: sessionmaker[Session], study: str, series: str | None = None, sop: str | None = None
) -> list[StoredInstance]:
    """Return the instances of a study, series or single instance in a stable order.

    Raises NotFound when nothing matches, so a retrieve of an unknown resource is a 404.
    """
    columns = select(
        Study.study_instance_uid,
        Series.series_instance_uid,
        Instance.sop_instance_uid,
        Instance.sop_class_uid,
        Instance.transfer_syntax_uid,
        Instance.object_key,
        Instance.size,
        Instance.number_of_frames,
        Instance.frame_offsets,
    ).select_from(Instance)
    with sessions() as session:
        rows = [StoredInstance(*row) for row in session.execute(_scoped(columns, study, series, sop)).all()]
    if not rows:
        raise NotFound(_describe(study, series, sop))
    return rows


def find_metadata(
    sessions: sessionmaker[Session], study: str, series: str | None = None, sop: str | None = None
) -> tuple[list[str], datetime]:
    """Return the stored DICOM JSON text of each instance (same order as find_instances) and when the
    newest of them was indexed (for Last-Modified).

    Raises NotFound when nothing matches.
    """
    with sessions() as session:
        rows = session.execute(_scoped(select(Instance.metadata_json, Instance.indexed_at), study, series, sop)).all()
    if not rows:
        raise NotFound(_describe(study, series, sop))
    return [text for text, _ in rows], max(indexed for _, indexed in rows)


def _describe(study: str, series: str | None, sop: str | None) -> str:
    if sop is not None:
        return f"instance {sop} of series {series} in study {study}"
    if series is not None:
        return f"series {series} in study {study}"
    return f"study {study}"
