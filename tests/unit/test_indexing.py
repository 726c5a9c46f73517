"""Indexing one object: DICOM JSON (PS3.18 Annex F), frame offsets and rows, from a store and a SQLite index."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import select

from gateway.errors import InvalidDicom, NotFound
from gateway.index.db import make_engine, migrate
from gateway.index.models import Instance, Study
from gateway.index.repository import IndexRepository
from gateway.indexing import IndexingService
from tests.factories import make_dataset, new_uid, to_part10_bytes
from tests.fakes import MemoryStore


@pytest.fixture
def indexing(tmp_path: Path) -> IndexingService:
    engine = make_engine(f"sqlite:///{tmp_path / 'index.sqlite'}")
    migrate(engine)
    return IndexingService(MemoryStore(), IndexRepository(engine))


def put(indexing: IndexingService, data: bytes, study: str, series: str, sop: str) -> str:
    key = f"{study}/{series}/{sop}.dcm"
    indexing.store.put(key, data)
    return key


def test_instance_json_frames_and_study_row(indexing: IndexingService) -> None:
    ds = make_dataset(frames=3, rows=4, columns=4, patient_name="Müller^Jürgen")
    key = put(indexing, to_part10_bytes(ds), ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert indexing.index_object(key) is True
    assert indexing.index_object(key) is False  # idempotent
    with indexing.repository.sessions() as session:
        row = session.scalars(select(Instance)).one()
        study = session.scalars(select(Study)).one()
    document = orjson.loads(row.metadata_json)
    assert document["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jürgen"}]}
    base = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    assert document["7FE00010"]["BulkDataURI"] == f"{base}/bulkdata/7FE00010"
    assert "InlineBinary" not in document["7FE00010"]
    data = indexing.store.read(key)
    assert row.frame_offsets is not None and len(row.frame_offsets) == 3
    frame_bytes = [b"".join(data[o : o + n] for o, n in frame) for frame in row.frame_offsets]
    assert b"".join(frame_bytes) == ds.PixelData
    assert (row.rows, row.columns, row.number_of_frames) == (4, 4, 3)
    assert study.number_of_instances == 1 and study.modalities_in_study == "CT"
    assert study.study_json["0020000D"] == {"vr": "UI", "Value": [ds.StudyInstanceUID]}


def test_compressed_pydicom_file_is_indexed_with_its_transfer_syntax(indexing: IndexingService) -> None:
    path = Path(str(get_testdata_file("JPEG2000.dcm")))
    from pydicom import dcmread

    ds = dcmread(path, stop_before_pixels=True)
    key = put(indexing, path.read_bytes(), ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    indexing.index_object(key)
    with indexing.repository.sessions() as session:
        row = session.scalars(select(Instance)).one()
    assert row.transfer_syntax_uid == "1.2.840.10008.1.2.4.91"
    assert row.frame_offsets is not None and len(row.frame_offsets) == 1


def test_object_whose_uids_disagree_with_its_key_is_refused(indexing: IndexingService) -> None:
    ds = make_dataset()
    key = put(indexing, to_part10_bytes(ds), ds.StudyInstanceUID, new_uid(), ds.SOPInstanceUID)
    with pytest.raises(InvalidDicom, match="not those of its key"):
        indexing.index_object(key)


def test_missing_object_raises_not_found(indexing: IndexingService) -> None:
    with pytest.raises(NotFound):
        indexing.index_object(f"{new_uid()}/{new_uid()}/{new_uid()}.dcm")
