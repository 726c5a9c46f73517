"""Indexing one object: DICOM JSON (PS3.18 Annex F), frame offsets and rows, from a store and a SQLite index."""

from __future__ import annotations

import struct
from pathlib import Path

import orjson
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
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


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH", group, element) + vr + struct.pack("<H", len(value)) + value


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_numbers_a_modality_wrote_badly_are_kept_as_text_and_the_instance_indexed(
    indexing: IndexingService, syntax: str
) -> None:
    # A DS with a decimal comma, an IS that is not a number, a DS with an empty second value: pydicom
    # cannot convert them, and the instance must still be indexed (the JSON model allows DS and IS as
    # strings, PS3.18 F.2.3), with the rest of its header intact.
    ds = make_dataset(SliceThickness="1.5", InstanceNumber="12", PixelSpacing=["0.5", "0.5"])
    data = to_part10_bytes(ds, syntax)
    for good, bad in [
        ((0x18, 0x50, b"DS"), b"1,5 "),
        ((0x20, 0x13, b"IS"), b"x1"),
        ((0x28, 0x30, b"DS"), b"0.5\\    "),
    ]:
        group, element, vr = good
        value = {b"1,5 ": b"1.5 ", b"x1": b"12", b"0.5\\    ": b"0.5\\0.5 "}[bad]
        if syntax == ImplicitVRLittleEndian:
            old = struct.pack("<HHL", group, element, len(value)) + value
            new = struct.pack("<HHL", group, element, len(bad)) + bad
        else:
            old, new = _element(group, element, vr, value), _element(group, element, vr, bad)
        assert old in data, (good, syntax)
        data = data.replace(old, new)
    key = put(indexing, data, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)

    assert indexing.index_object(key) is True
    with indexing.repository.sessions() as session:
        row = session.scalars(select(Instance)).one()
    document = orjson.loads(row.metadata_json)
    assert document["00180050"] == {"vr": "DS", "Value": ["1,5"]}
    assert document["00200013"] == {"vr": "IS", "Value": ["x1"]}
    assert document["00280030"] == {"vr": "DS", "Value": ["0.5", None]}
    assert document["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": str(ds.PatientName)}]}
    assert row.instance_number is None, "an instance number that is not a number is not indexed as one"
