"""The attributes the index keeps per level (PS3.18 10.6 QIDO-RS return keys), extracted from a header."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from gateway.dicom.uids import validate_uid

# PS3.18 Table 10.6.1-5/-6 (study and series return keys) plus the patient module keys viewers show.
STUDY_LEVEL_TAGS: frozenset[str] = frozenset(
    {
        "00080005",  # SpecificCharacterSet
        "00080020",  # StudyDate
        "00080030",  # StudyTime
        "00080050",  # AccessionNumber
        "00080051",  # IssuerOfAccessionNumberSequence
        "00080090",  # ReferringPhysicianName
        "00081030",  # StudyDescription
        "00080201",  # TimezoneOffsetFromUTC
        "00100010",  # PatientName
        "00100020",  # PatientID
        "00100021",  # IssuerOfPatientID
        "00100030",  # PatientBirthDate
        "00100040",  # PatientSex
        "0020000D",  # StudyInstanceUID
        "00200010",  # StudyID
    }
)
SERIES_LEVEL_TAGS: frozenset[str] = frozenset(
    {
        "00080005",  # SpecificCharacterSet
        "00080060",  # Modality
        "0008103E",  # SeriesDescription
        "00180015",  # BodyPartExamined
        "0020000E",  # SeriesInstanceUID
        "00200011",  # SeriesNumber
        "00200060",  # Laterality
        "00400244",  # PerformedProcedureStepStartDate
        "00400245",  # PerformedProcedureStepStartTime
        "00400275",  # RequestAttributesSequence
    }
)


def _text(ds: Dataset, keyword: str) -> str | None:
    value: Any = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value) or None
    text = str(value).strip()
    return text or None


def _int(ds: Dataset, keyword: str) -> int | None:
    value: Any = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value[0] if type(value).__name__ == "MultiValue" else value)
    except (TypeError, ValueError):
        return None  # tolerant when we read: a malformed IS/US stays unindexed, not a failure


@dataclass(frozen=True)
class InstanceAttributes:
    """The patient/study/series/instance attributes of one instance as the index stores them."""

    patient_id: str
    issuer_of_patient_id: str
    patient_name: str | None
    patient_birth_date: str | None
    patient_sex: str | None
    study_instance_uid: str
    study_date: str | None
    study_time: str | None
    accession_number: str | None
    referring_physician_name: str | None
    study_id: str | None
    study_description: str | None
    series_instance_uid: str
    modality: str | None
    series_number: int | None
    series_description: str | None
    performed_procedure_step_start_date: str | None
    performed_procedure_step_start_time: str | None
    body_part_examined: str | None
    sop_class_uid: str
    sop_instance_uid: str
    instance_number: int | None
    rows: int | None
    columns: int | None
    number_of_frames: int | None


def extract_attributes(ds: Dataset) -> InstanceAttributes:
    """Return the indexed attributes of `ds`; raise InvalidUID when one of its identifying UIDs is bad."""
    return InstanceAttributes(
        patient_id=_text(ds, "PatientID") or "",
        issuer_of_patient_id=_text(ds, "IssuerOfPatientID") or "",
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        study_instance_uid=validate_uid(ds.get("StudyInstanceUID"), "StudyInstanceUID"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        accession_number=_text(ds, "AccessionNumber"),
        referring_physician_name=_text(ds, "ReferringPhysicianName"),
        study_id=_text(ds, "StudyID"),
        study_description=_text(ds, "StudyDescription"),
        series_instance_uid=validate_uid(ds.get("SeriesInstanceUID"), "SeriesInstanceUID"),
        modality=_text(ds, "Modality"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        performed_procedure_step_start_date=_text(ds, "PerformedProcedureStepStartDate"),
        performed_procedure_step_start_time=_text(ds, "PerformedProcedureStepStartTime"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        sop_class_uid=validate_uid(ds.get("SOPClassUID"), "SOPClassUID"),
        sop_instance_uid=validate_uid(ds.get("SOPInstanceUID"), "SOPInstanceUID"),
        instance_number=_int(ds, "InstanceNumber"),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        number_of_frames=_int(ds, "NumberOfFrames"),
    )


def level_json(instance_json: dict[str, Any], tags: frozenset[str]) -> dict[str, Any]:
    """Return the part of an instance's DICOM JSON that belongs to one level (study or series)."""
    return {tag: value for tag, value in instance_json.items() if tag in tags}
