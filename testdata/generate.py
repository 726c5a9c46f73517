"""Generate a small, deterministic synthetic DICOM corpus, and list the pydicom test files we use.

    python -m testdata.generate OUT_DIR

The same call always writes the same files with the same UIDs (UIDs are derived from fixed names),
so tests can compute what to expect from the files themselves with pydicom.
"""

from __future__ import annotations

import argparse
import io
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    UltrasoundMultiFrameImageStorage,
)

# pydicom's bundled files, one per SOP Instance UID, covering transfer syntaxes the synthetic set lacks
# (JPEG lossless, JPEG 2000, a JPEG baseline multi-frame, an RT Plan without pixels, deflated).
PYDICOM_FILES = (
    "CT_small.dcm",
    "JPEG2000.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "examples_ybr_color.dcm",
    "rtplan.dcm",
    "image_dfl.dcm",
)


def uid(*names: object) -> str:
    """A UID derived only from `names` (2.25 root, PS3.5 B.2), so every run gives the same one."""
    name = "/".join(["dicom-gateway-testdata", *map(str, names)])
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"


@dataclass(frozen=True)
class Patient:
    patient_id: str
    name: str
    charset: str | list[str]
    birth_date: str
    sex: str


LATIN1 = Patient("GW-0001", "Müller^Jürgen", "ISO_IR 100", "19610304", "M")
UTF8 = Patient("GW-0002", "Smith^Anna^Maria^Dr.^", "ISO_IR 192", "19850712", "F")
JAPANESE = Patient("GW-0003", "Yamada^Tarou=山田^太郎=やまだ^たろう", ["", "ISO 2022 IR 87"], "19700101", "M")


def _image(
    patient: Patient | None,
    study: str,
    series: str,
    sop: str,
    sop_class: str,
    modality: str,
    *,
    rows: int,
    columns: int,
    frames: int = 1,
    bits: int = 16,
    seed: int = 0,
) -> Dataset:
    ds = Dataset()
    if patient is not None:
        ds.SpecificCharacterSet = patient.charset
        ds.PatientName = patient.name
        ds.PatientID = patient.patient_id
        ds.PatientBirthDate = patient.birth_date
        ds.PatientSex = patient.sex
    else:
        ds.PatientName = ""
        ds.PatientID = ""
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.Modality = modality
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = bits
    ds.BitsStored = 12 if bits == 16 else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if frames > 1 or sop_class == UltrasoundMultiFrameImageStorage:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x00181063
        ds.FrameTime = 40.0
    y, x = np.mgrid[0:rows, 0:columns]
    planes = [((x * 7 + y * 13 + f * 31 + seed * 101) % (1 << ds.BitsStored)) for f in range(frames)]
    pixels = np.stack(planes).astype(np.uint16 if bits == 16 else np.uint8)
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW" if bits == 16 else "OB"
    if bits == 16:
        ds.WindowCenter = 2048
        ds.WindowWidth = 4096
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "GW_TESTDATA"
    return ds


def _study_attrs(ds: Dataset, date: str, time: str, accession: str, description: str, referrer: str) -> None:
    ds.StudyDate = date
    ds.StudyTime = time
    ds.AccessionNumber = accession
    ds.StudyID = accession[-4:]
    ds.StudyDescription = description
    ds.ReferringPhysicianName = referrer


def _series_attrs(ds: Dataset, number: int, description: str, body_part: str, instance: int) -> None:
    ds.SeriesNumber = number
    ds.SeriesDescription = description
    ds.BodyPartExamined = body_part
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [0.0, 0.0, float(instance) * 2.5]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 2.5


def _save(ds: Dataset, path: Path, transfer_syntax: str) -> Path:
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    if transfer_syntax == ExplicitVRBigEndian and ds.BitsAllocated == 16:
        # pydicom writes OW pixel bytes as given: supply them big-endian.
        ds.PixelData = np.frombuffer(ds.PixelData, dtype="<u2").astype(">u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def _ct_study(out: Path) -> list[Path]:
    """Patient in Latin-1: one CT study, two series (explicit and implicit VR little endian), one RLE slice."""
    study = uid("ct-study")
    paths = []
    for series_number, (label, ts) in enumerate(
        [("Axial 2.5mm", ExplicitVRLittleEndian), ("Coronal MPR", ImplicitVRLittleEndian)], start=1
    ):
        series = uid("ct-series", series_number)
        for n in range(1, 4):
            ds = _image(
                LATIN1,
                study,
                series,
                uid("ct", series_number, n),
                CTImageStorage,
                "CT",
                rows=64,
                columns=64,
                seed=series_number * 10 + n,
            )
            _study_attrs(ds, "20240115", "101500", "ACC-CT-0001", "CT Thorax mit KM", "Schäfer^Hans")
            _series_attrs(ds, series_number, label, "CHEST", n)
            paths.append(_save(ds, out / f"ct/series{series_number}/{n:03d}.dcm", ts))
    series = uid("ct-series", 3)
    ds = _image(LATIN1, study, series, uid("ct", 3, 1), CTImageStorage, "CT", rows=64, columns=64, seed=31)
    _study_attrs(ds, "20240115", "101500", "ACC-CT-0001", "CT Thorax mit KM", "Schäfer^Hans")
    _series_attrs(ds, 3, "Scout (RLE)", "CHEST", 1)
    ds.compress(RLELossless, generate_instance_uid=False)
    paths.append(_save(ds, out / "ct/series3/001.dcm", RLELossless))
    return paths


def _mr_study(out: Path) -> list[Path]:
    """Patient in UTF-8: one MR study, one series in explicit big endian, deflated and explicit little endian."""
    study, series = uid("mr-study"), uid("mr-series", 1)
    syntaxes = [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian]
    paths = []
    for n, ts in enumerate(syntaxes, start=1):
        ds = _image(UTF8, study, series, uid("mr", n), MRImageStorage, "MR", rows=32, columns=48, seed=n)
        _study_attrs(ds, "20240302", "083000.125", "ACC-MR-0002", "MRI Brain w/o contrast", "House^Gregory")
        _series_attrs(ds, 1, "T1 SE sag", "HEAD", n)
        paths.append(_save(ds, out / f"mr/{n:03d}.dcm", ts))
    return paths


def _us_study(out: Path) -> list[Path]:
    """Japanese patient (ISO 2022 IR 87): a multi-frame US cine loop and a JPEG baseline secondary capture."""
    study = uid("us-study")
    ds = _image(
        JAPANESE,
        study,
        uid("us-series", 1),
        uid("us", 1),
        UltrasoundMultiFrameImageStorage,
        "US",
        rows=48,
        columns=64,
        frames=10,
        bits=8,
    )
    _study_attrs(ds, "20241231", "235959", "ACC-US-0003", "Abdomen US", "Suzuki^Ichiro")
    _series_attrs(ds, 1, "Cine liver", "ABDOMEN", 1)
    paths = [_save(ds, out / "us/cine.dcm", ExplicitVRLittleEndian)]

    ds = _image(
        JAPANESE,
        study,
        uid("us-series", 2),
        uid("us", 2),
        SecondaryCaptureImageStorage,
        "OT",
        rows=64,
        columns=64,
        bits=8,
        seed=5,
    )
    _study_attrs(ds, "20241231", "235959", "ACC-US-0003", "Abdomen US", "Suzuki^Ichiro")
    _series_attrs(ds, 2, "Key image (JPEG)", "ABDOMEN", 1)
    ds.ConversionType = "WSD"
    ds.PixelData = encapsulate([_jpeg_baseline(ds)])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    paths.append(_save(ds, out / "us/key-image-jpeg.dcm", JPEGBaseline8Bit))
    return paths


def _jpeg_baseline(ds: Dataset) -> bytes:
    from PIL import Image

    pixels = np.frombuffer(ds.PixelData, dtype=np.uint8).reshape(ds.Rows, ds.Columns)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    return data + (b"\x00" if len(data) % 2 else b"")


def _sparse_study(out: Path) -> list[Path]:
    """A study with only the required attributes: no date, accession, description, names or patient ID."""
    ds = _image(
        None,
        uid("sparse-study"),
        uid("sparse-series"),
        uid("sparse", 1),
        CTImageStorage,
        "CT",
        rows=16,
        columns=16,
        seed=9,
    )
    return [_save(ds, out / "sparse/001.dcm", ExplicitVRLittleEndian)]


_PARTS: tuple[Callable[[Path], list[Path]], ...] = (_ct_study, _mr_study, _us_study, _sparse_study)


def generate_corpus(out_dir: Path) -> list[Path]:
    """Write the corpus under `out_dir` and return the paths, in a stable order."""
    out_dir = Path(out_dir)
    paths: list[Path] = []
    for part in _PARTS:
        paths.extend(part(out_dir))
    return paths


def pydicom_test_files() -> list[Path]:
    """Paths of the bundled pydicom test files in PYDICOM_FILES (no download needed)."""
    paths = []
    for name in PYDICOM_FILES:
        path = get_testdata_file(name, download=False)
        if path is None:
            raise FileNotFoundError(f"pydicom test file {name} is not bundled with this pydicom")
        paths.append(Path(str(path)))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out_dir", type=Path, help="folder to write the corpus into")
    parser.add_argument("--with-pydicom", action="store_true", help="also copy pydicom's bundled test files")
    args = parser.parse_args(argv)
    paths = generate_corpus(args.out_dir)
    if args.with_pydicom:
        for path in pydicom_test_files():
            target = args.out_dir / "pydicom" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
            paths.append(target)
    sys.stdout.write(f"wrote {len(paths)} files under {args.out_dir}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
