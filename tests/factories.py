"""Small synthetic DICOM instances for tests: valid UIDs, file meta and native pixel data."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

_SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage, "US": UltrasoundMultiFrameImageStorage}


def new_uid() -> str:
    """A fresh, valid UID under pydicom's root."""
    return str(generate_uid())


def make_dataset(
    modality: str = "CT",
    rows: int = 8,
    columns: int = 8,
    frames: int = 1,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    patient_id: str = "PAT1",
    patient_name: str = "Doe^Jane",
    **attrs: Any,
) -> Dataset:
    """Return an image instance with 16-bit native pixel data; `attrs` set or override any keyword."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = _SOP_CLASSES.get(modality, CTImageStorage)
    ds.SOPInstanceUID = sop_uid or new_uid()
    ds.StudyInstanceUID = study_uid or new_uid()
    ds.SeriesInstanceUID = series_uid or new_uid()
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = "20240115"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC1"
    ds.StudyID = "1"
    ds.StudyDescription = "Synthetic study"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = "Synthetic series"
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    pixels = (np.arange(frames * rows * columns, dtype=np.uint16) % 4096).reshape(frames, rows, columns)
    ds.PixelData = pixels.tobytes()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


def to_part10_bytes(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """Encode `ds` as a Part 10 file in `transfer_syntax` (an uncompressed one)."""
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_part10(ds: Dataset, path: Path) -> Path:
    """Write `ds` as a Part 10 file at `path` and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_part10_bytes(ds))
    return path
