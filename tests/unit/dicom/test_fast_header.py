"""The fast header reader gives exactly what pydicom gives, or declines and pydicom reads the header."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gateway.dicom import fast_header
from gateway.dicom.attributes import extract_attributes
from gateway.dicom.header import HEADER_KEYWORDS, HEADER_TAGS, INGEST_TAGS, read_header, read_header_values
from gateway.dicom.json_model import dataset_to_json
from testdata.generate import generate_corpus, pydicom_test_files
from tests.factories import make_dataset, to_part10_bytes

BASE = "/dicomweb/studies/1/series/2/instances/3"


def _pydicom_view(data: bytes) -> tuple[dict[str, Any], Any, Any, dict[str, Any]]:
    header = read_header(io.BytesIO(data))
    ds = header.dataset
    values = {keyword: ds.get(keyword) for keyword in HEADER_KEYWORDS}
    return dataset_to_json(ds, BASE), header.pixel_data, header.transfer_syntax_uid, values


def _fast_view(data: bytes) -> tuple[dict[str, Any], Any, Any, dict[str, Any]]:
    fast_header.parse(data, HEADER_TAGS, complete=True, bulk_base=BASE)  # raises Unsupported when it declines
    header = read_header_values(io.BytesIO(data), len(data), bulk_base=BASE)
    assert isinstance(header.values, dict), "the fast reader parsed it, so its values must be used"
    assert header.json is not None
    values = {keyword: header.values.get(keyword) for keyword in HEADER_KEYWORDS}
    return header.json, header.pixel_data, header.transfer_syntax_uid, values


def _assert_same(data: bytes) -> None:
    expected_json, expected_layout, expected_syntax, expected_values = _pydicom_view(data)
    json, layout, syntax, values = _fast_view(data)
    assert json == expected_json
    assert layout == expected_layout
    assert syntax == expected_syntax
    for keyword, value in expected_values.items():
        got = values[keyword]
        if value is None:
            assert got is None, keyword
        elif type(value).__name__ in ("MultiValue", "list"):
            assert [str(v) for v in got] == [str(v) for v in value], keyword
        else:
            assert str(got) == str(value), keyword
    assert extract_attributes(values) == extract_attributes(read_header(io.BytesIO(data)).dataset)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return [*generate_corpus(tmp_path_factory.mktemp("corpus")), *pydicom_test_files()]


def test_every_corpus_file_reads_as_pydicom_reads_it_or_is_declined(corpus: list[Path]) -> None:
    fast = 0
    for path in corpus:
        data = path.read_bytes()
        try:
            fast_header.parse(data, HEADER_TAGS, complete=True, bulk_base=BASE)
        except fast_header.Unsupported:
            # Declined: the combined reader must give pydicom's result.
            header = read_header_values(io.BytesIO(data), len(data), bulk_base=BASE)
            assert header.json == dataset_to_json(read_header(io.BytesIO(data)).dataset, BASE), path.name
            continue
        _assert_same(data)
        fast += 1
    # The synthetic corpus is what modalities send (plain little endian, ASCII): most of it takes the fast path.
    assert fast >= len(corpus) // 2, f"only {fast} of {len(corpus)} files took the fast path"


def test_the_ingest_tags_find_the_same_uids_and_pixel_data_as_the_full_read(corpus: list[Path]) -> None:
    """Ingest converts only INGEST_TAGS; the UIDs it checks and the pixel data it bounds must not change."""
    for path in corpus:
        data = path.read_bytes()
        full = read_header_values(io.BytesIO(data), len(data))
        narrow = read_header_values(io.BytesIO(data), len(data), tags=INGEST_TAGS)
        assert narrow.pixel_data == full.pixel_data, path.name
        for keyword in INGEST_TAGS.values():
            assert str(narrow.values.get(keyword)) == str(full.values.get(keyword)), (path.name, keyword)
    assert len(INGEST_TAGS) == 10, "every ingest keyword is in pydicom's dictionary"


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_values_of_every_shape_match_pydicom(syntax: str) -> None:
    item = Dataset()
    item.CodeValue = "T-D0050"
    item.CodingSchemeDesignator = "SRT"
    item.CodeMeaning = "Trunk"
    empty_item = Dataset()
    ds = make_dataset(
        patient_name="Yamada^Tarou=YAMADA^TAROU=yamada^tarou",
        ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
        PixelSpacing=[0.5, "0.4882812"],
        ImagePositionPatient=["-125", "-125.5", "1e2"],
        WindowCenter="40",
        SliceThickness="",
        OtherPatientIDs="ID1\\ID2",
        ReferringPhysicianName="Smith^John\\Doe^Jane",
        StudyComments="  leading spaces kept, trailing removed   ",
        RetrieveAETitle=" AE1 \\AE2",
        FrameIncrementPointer=0x00181063,
        AnatomicRegionSequence=Sequence([item, empty_item]),
        ReferencedImageSequence=Sequence([]),
        SmallestImagePixelValue=0,
        LargestImagePixelValue=4095,
        RescaleIntercept="-1024",
        RescaleSlope="1",
        SeriesNumber="7",
        InstanceNumber=" 12",
        EchoTrainLength=None,
        RedPaletteColorLookupTableData=b"\x01\x02" * 10,
        SpatialResolution=0.25,
    )
    ds.SpecificCharacterSet = "ISO_IR 100"
    _assert_same(to_part10_bytes(ds, syntax))


def test_large_binary_values_become_bulk_data_uris_as_in_pydicom() -> None:
    ds = make_dataset(RedPaletteColorLookupTableData=b"\x00\x01" * 600)  # 1200 bytes > the inline limit
    data = to_part10_bytes(ds)
    _assert_same(data)
    json, *_ = _fast_view(data)
    assert json["00281201"] == {"vr": "OW", "BulkDataURI": f"{BASE}/bulkdata/00281201"}


@pytest.mark.parametrize(
    "attrs",
    [
        {"SpecificCharacterSet": "ISO_IR 144", "PatientName": "Иванов^Иван"},  # a character set it does not decode
        {"InstanceNumber": "1.0"},  # an IS pydicom accepts only through float
        {"SpatialResolution": "1e999"},  # a DS that is not a finite number
    ],
)
def test_what_it_cannot_read_exactly_is_declined_and_read_by_pydicom(attrs: dict[str, Any]) -> None:
    data = to_part10_bytes(make_dataset(**attrs))
    with pytest.raises(fast_header.Unsupported):
        fast_header.parse(data, HEADER_TAGS, complete=True, bulk_base=BASE)
    header = read_header_values(io.BytesIO(data), len(data), bulk_base=BASE)
    assert isinstance(header.values, Dataset)
    assert header.json == dataset_to_json(read_header(io.BytesIO(data)).dataset, BASE)


def test_a_header_longer_than_the_first_read_is_read_in_more_steps() -> None:
    ds = make_dataset(StudyComments="x" * 60_000, ImageComments="y" * 20_000)
    data = to_part10_bytes(ds)
    with pytest.raises(fast_header.NeedMore):
        fast_header.parse(data[:16384], HEADER_TAGS, complete=False, bulk_base=BASE)
    _assert_same(data)


def test_a_truncated_object_is_left_to_pydicom() -> None:
    data = to_part10_bytes(make_dataset(StudyComments="x" * 1000))
    cut = data[: data.index(b"x" * 1000) + 10]
    with pytest.raises(fast_header.NeedMore):
        fast_header.parse(cut, HEADER_TAGS, complete=True)
    header = read_header_values(io.BytesIO(cut), len(cut), bulk_base=BASE)
    assert isinstance(header.values, Dataset)
    assert header.json == dataset_to_json(read_header(io.BytesIO(cut)).dataset, BASE)


def test_repeated_value_bytes_decode_in_each_headers_own_character_set() -> None:
    """Values are remembered by their bytes and the character set they were decoded in, never by bytes alone."""
    fast_header._MEMO.clear()
    latin = to_part10_bytes(make_dataset(SpecificCharacterSet="ISO_IR 100", PatientName="Ã©mile"))
    utf8 = to_part10_bytes(make_dataset(SpecificCharacterSet="ISO_IR 192", PatientName="émile"))
    assert "émile".encode() in latin and "émile".encode() in utf8, "the same value bytes in both headers"
    for data in (latin, utf8, latin, utf8):  # the second round reads from the memo
        _assert_same(data)
    names = [
        fast_header.parse(d, HEADER_TAGS, complete=True, bulk_base=BASE).values["PatientName"] for d in (latin, utf8)
    ]
    assert names == ["Ã©mile", "émile"]


def test_the_value_memo_stays_within_its_bound_and_exact(monkeypatch: pytest.MonkeyPatch, corpus: list[Path]) -> None:
    fast_header._MEMO.clear()
    monkeypatch.setattr(fast_header, "_MEMO_ENTRIES", 5)
    read = 0
    for path in corpus[:20]:
        data = path.read_bytes()
        try:
            fast_header.parse(data, HEADER_TAGS, complete=True, bulk_base=BASE)
        except fast_header.Unsupported:
            continue
        _assert_same(data)
        read += 1
        assert len(fast_header._MEMO) <= 5
    assert read >= 10
