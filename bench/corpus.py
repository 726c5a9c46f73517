"""A deterministic synthetic CT corpus, cached on disk: same parameters, same files, same UIDs.

Study 0 is the "metadata study": it gets at least 100 instances (or every instance a tiny corpus can
spare) so WADO-RS `/metadata` is measured on a study the size viewers open. The other studies share
the rest evenly. Two studies belong to each patient so a `PatientID` query matches a subset.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian

MANIFEST = "corpus.json"
METADATA_STUDY_INSTANCES = 100  # issue #6: /metadata of a 100-instance study
_FORMAT = 1  # bump when the generated files change, so stale caches are not reused


@dataclass(frozen=True)
class CorpusSpec:
    """What to generate; equal specs give byte-identical corpora."""

    instances: int
    studies: int
    series_per_study: int
    size: int

    def key(self) -> str:
        """A short name for the cache folder of this spec."""
        return f"ct-{self.instances}i-{self.studies}s-{self.series_per_study}x-{self.size}px-v{_FORMAT}"


@dataclass(frozen=True)
class Corpus:
    """A generated corpus: its files in sending order and the UIDs the loads need."""

    root: Path
    spec: CorpusSpec
    files: list[Path]
    total_bytes: int
    study_uids: list[str]
    study_instances: list[int]
    patient_id: str  # the patient of study 0, for QIDO ?PatientID=
    patient_studies: int  # how many studies that patient has

    @property
    def metadata_study_uid(self) -> str:
        return self.study_uids[0]

    @property
    def metadata_study_instances(self) -> int:
        return self.study_instances[0]


def uid(*names: object) -> str:
    """A UID derived only from `names` (2.25 root, PS3.5 B.2), so every run gives the same one."""
    name = "/".join(["dicom-gateway-bench", *map(str, names)])
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"


def study_sizes(instances: int, studies: int) -> list[int]:
    """Instances per study: study 0 gets ≥100 when it can, every other study at least one."""
    studies = max(1, min(studies, instances))
    if studies == 1:
        return [instances]
    first = min(instances - (studies - 1), max(METADATA_STUDY_INSTANCES, math.ceil(instances / studies)))
    rest, extra = divmod(instances - first, studies - 1)
    return [first] + [rest + (1 if n < extra else 0) for n in range(studies - 1)]


def _patient_id(study: int) -> str:
    return f"BENCH-{study // 2 + 1:04d}"


def _dataset(spec: CorpusSpec, study: int, series: int, number: int, pixels: bytes) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = uid("instance", study, series, number)
    ds.StudyDate = f"202401{study % 28 + 1:02d}"
    ds.StudyTime = "101500"
    ds.AccessionNumber = f"BENCH{study:05d}"
    ds.Modality = "CT"
    ds.Manufacturer = "dicom-gateway bench"
    ds.ReferringPhysicianName = "Referrer^Bench"
    ds.StudyDescription = f"Bench CT study {study}"
    ds.SeriesDescription = f"Axial series {series}"
    ds.PatientName = f"Bench^Patient{study // 2 + 1}"
    ds.PatientID = _patient_id(study)
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = 1.0
    ds.KVP = 120
    ds.StudyInstanceUID = uid("study", study)
    ds.SeriesInstanceUID = uid("series", study, series)
    ds.StudyID = str(study)
    ds.SeriesNumber = series + 1
    ds.InstanceNumber = number + 1
    ds.ImagePositionPatient = [-250.0, -250.0, float(number)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.FrameOfReferenceUID = uid("frame-of-reference", study)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.size
    ds.Columns = spec.size
    ds.PixelSpacing = [0.7, 0.7]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = pixels
    ds["PixelData"].VR = "OW"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "GW_BENCH"
    return ds


def _layout(spec: CorpusSpec) -> list[tuple[int, int, int]]:
    """(study, series, instance number) of every file, in sending order."""
    layout = []
    for study, count in enumerate(study_sizes(spec.instances, spec.studies)):
        series_count = max(1, min(spec.series_per_study, count))
        for number in range(count):
            layout.append((study, number * series_count // count, number))
    return layout


def _describe(root: Path, spec: CorpusSpec, files: list[Path]) -> Corpus:
    sizes = study_sizes(spec.instances, spec.studies)
    patient = _patient_id(0)
    return Corpus(
        root=root,
        spec=spec,
        files=files,
        total_bytes=sum(p.stat().st_size for p in files),
        study_uids=[uid("study", n) for n in range(len(sizes))],
        study_instances=sizes,
        patient_id=patient,
        patient_studies=sum(1 for n in range(len(sizes)) if _patient_id(n) == patient),
    )


def load_or_generate(
    spec: CorpusSpec, cache_dir: Path, advance: Callable[[int], None] | None = None
) -> tuple[Corpus, bool]:
    """Return the corpus for `spec` under `cache_dir`, generating it unless a complete copy is there.

    The manifest is written last, so an interrupted generation is never mistaken for a cached corpus.
    Returns (corpus, generated).
    """
    root = cache_dir / spec.key()
    manifest = root / MANIFEST
    layout = _layout(spec)
    files = [root / f"study{s:03d}" / f"series{r:02d}" / f"{n:05d}.dcm" for s, r, n in layout]
    if manifest.is_file():
        recorded = json.loads(manifest.read_text())
        if recorded.get("spec") == asdict(spec) and all(p.is_file() for p in files):
            return _describe(root, spec, files), False
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    # One pixel pattern per series; pixel content does not matter for uncompressed transfer, only its size.
    rng = np.random.default_rng(20240115)
    pixels: dict[tuple[int, int], bytes] = {}
    for path, (study, series, number) in zip(files, layout, strict=True):
        if (study, series) not in pixels:
            image = rng.integers(0, 4096, size=(spec.size, spec.size), dtype=np.uint16)
            pixels[(study, series)] = image.astype("<u2").tobytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        _dataset(spec, study, series, number, pixels[(study, series)]).save_as(path, enforce_file_format=True)
        if advance is not None:
            advance(1)
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"spec": asdict(spec), "files": len(files)}, indent=2))
    os.replace(tmp, manifest)
    return _describe(root, spec, files), True


def default_cache_dir() -> Path:
    """Where corpora are kept between runs: $XDG_CACHE_HOME/dicom-gateway-bench (~/.cache by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dicom-gateway-bench"
