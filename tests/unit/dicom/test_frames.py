"""Frame byte ranges found by the header reader equal the frames pydicom decodes from the same file."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames

from gateway.dicom.header import read_header


def bundled(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is missing"
    return Path(str(path))


def ranges_bytes(data: bytes, frame: list[list[int]]) -> bytes:
    return b"".join(data[offset : offset + length] for offset, length in frame)


@pytest.mark.parametrize("name", ["rtdose.dcm", "rtdose_expb.dcm", "CT_small.dcm", "MR_small_bigendian.dcm"])
def test_native_frames_are_exact_byte_ranges(name: str) -> None:
    data = bundled(name).read_bytes()
    header = read_header(io.BytesIO(data))
    ds = dcmread(io.BytesIO(data))
    layout = header.pixel_data
    assert layout is not None and layout.frames is not None and not layout.encapsulated
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    assert len(layout.frames) == frames
    frame_length = len(ds.PixelData) // frames
    for index, frame in enumerate(layout.frames):
        assert ranges_bytes(data, frame) == ds.PixelData[index * frame_length : (index + 1) * frame_length]


@pytest.mark.parametrize(
    "name",
    [
        "examples_ybr_color.dcm",
        "rtdose_rle.dcm",
        "SC_rgb_rle_2frame.dcm",
        "JPEG2000.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
    ],
)
def test_encapsulated_frames_match_pydicom(name: str) -> None:
    data = bundled(name).read_bytes()
    header = read_header(io.BytesIO(data))
    ds = dcmread(io.BytesIO(data))
    layout = header.pixel_data
    assert layout is not None and layout.encapsulated and layout.frames is not None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    expected = list(generate_frames(ds.PixelData, number_of_frames=frames))
    assert [ranges_bytes(data, frame) for frame in layout.frames] == expected


def test_header_without_pixel_data_has_no_layout() -> None:
    header = read_header(io.BytesIO(bundled("rtplan.dcm").read_bytes()))
    assert header.pixel_data is None
    assert header.dataset.SOPInstanceUID


def test_deflated_files_are_parsed_without_frame_offsets() -> None:
    header = read_header(io.BytesIO(bundled("image_dfl.dcm").read_bytes()))
    assert header.transfer_syntax_uid == "1.2.840.10008.1.2.1.99"
    assert header.pixel_data is None
