"""The attributes the index keeps per level (PS3.18 10.6 QIDO-RS return keys), extracted from a header."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
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


def _many(value: Any) -> bool:
    return isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"


def _get(ds: Dataset | Mapping[str, Any], keyword: str) -> Any:
    try:
        return ds.get(keyword)
    except (ValueError, TypeError):  # pydicom could not convert it (an IS of "x1", say): not indexed
        return None


def _text(ds: Dataset | Mapping[str, Any], keyword: str) -> str | None:
    value: Any = _get(ds, keyword)
    if value is None or value == "":
        return None
    if _many(value):
        return "\\".join(str(v) for v in value) or None
    text = str(value).strip()
    return text or None


def _int(ds: Dataset | Mapping[str, Any], keyword: str) -> int | None:
    value: Any = _get(ds, keyword)
    if value is None or value == "":
        return None
    try:
        return int(value[0] if _many(value) else value)
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
    # Defaulted so that callers built before this field existed keep working.
    acquisition_date_time: str | None = None


# Every keyword extract_attributes reads: the fast header reader collects exactly these.
INDEXED_KEYWORDS: tuple[str, ...] = (
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
    "StudyDescription",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "BodyPartExamined",
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "AcquisitionDateTime",
)


def extract_attributes(ds: Dataset | Mapping[str, Any]) -> InstanceAttributes:
    """Return the indexed attributes of a header's values (a pydicom dataset, or the same values by keyword).

    Raises InvalidUID when one of its identifying UIDs is bad.
    """
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
        acquisition_date_time=_text(ds, "AcquisitionDateTime"),
    )


def level_json(instance_json: dict[str, Any], tags: frozenset[str]) -> dict[str, Any]:
    """Return the part of an instance's DICOM JSON that belongs to one level (study or series)."""
    return {tag: value for tag, value in instance_json.items() if tag in tags}


def normalize_person_name(value: str | None) -> str | None:
    """Return a PN value in the form the index matches on: upper case, trailing delimiters and spaces removed.

    PS3.4 C.2.2.2.1: PN matching is case-insensitive; PS3.5 6.2: trailing empty components (`^`) and
    groups (`=`) are insignificant. Applied alike to stored values and to query values (wildcards survive).
    """
    if value is None:
        return None
    groups = ["^".join(part.strip() for part in group.split("^")).rstrip("^") for group in value.upper().split("=")]
    return "=".join(groups).rstrip("=") or None


class QueryLevel(StrEnum):
    """Query/Retrieve Level (0008,0052) of the Study Root information model (PS3.4 C.6.2)."""

    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"

    @property
    def depth(self) -> int:
        """0 for STUDY, 1 for SERIES, 2 for IMAGE: a query may use keys of its own or a higher level."""
        return list(QueryLevel).index(self)


def vr_of(tag: str) -> str:
    """Return the VR of a tag in the PS3.6 dictionary (the first one when it lists several); UN if unknown."""
    try:
        return dictionary_VR(int(tag, 16)).split(" ")[0]
    except KeyError:
        return "UN"


def tag_of(name: str) -> str | None:
    """Return the tag (8 upper-case hex digits) of a PS3.6 keyword or tag string, or None when it is neither."""
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        return name.upper()
    tag = tag_for_keyword(name)
    return f"{tag:08X}" if tag is not None else None


@dataclass(frozen=True)
class MatchingKey:
    """An attribute the index can match on, with its VR and Query/Retrieve level."""

    tag: str
    keyword: str
    vr: str
    level: QueryLevel


def _keys(level: QueryLevel, *tags: str) -> list[MatchingKey]:
    return [MatchingKey(tag, keyword_for_tag(int(tag, 16)), vr_of(tag), level) for tag in tags]


# Every key here has an indexed column (gateway/index/queries.py): PS3.18 Table 10.6.1-5 (study, with the
# patient keys of the Study Root model), 10.6.1-6 (series) and 10.6.1-7 (instance) plus a few more.
MATCHING_KEYS: dict[str, MatchingKey] = {
    key.tag: key
    for key in (
        *_keys(
            QueryLevel.STUDY,
            "00080020",  # StudyDate
            "00080030",  # StudyTime
            "00080050",  # AccessionNumber
            "00080061",  # ModalitiesInStudy
            "00080090",  # ReferringPhysicianName
            "00081030",  # StudyDescription
            "00100010",  # PatientName
            "00100020",  # PatientID
            "00100021",  # IssuerOfPatientID
            "00100030",  # PatientBirthDate
            "00100040",  # PatientSex
            "0020000D",  # StudyInstanceUID
            "00200010",  # StudyID
        ),
        *_keys(
            QueryLevel.SERIES,
            "00080060",  # Modality
            "0008103E",  # SeriesDescription
            "00180015",  # BodyPartExamined
            "0020000E",  # SeriesInstanceUID
            "00200011",  # SeriesNumber
            "00400244",  # PerformedProcedureStepStartDate
            "00400245",  # PerformedProcedureStepStartTime
        ),
        *_keys(
            QueryLevel.IMAGE,
            "00080016",  # SOPClassUID
            "00080018",  # SOPInstanceUID
            "0008002A",  # AcquisitionDateTime
            "00200013",  # InstanceNumber
            "00280008",  # NumberOfFrames
            "00280010",  # Rows
            "00280011",  # Columns
        ),
    )
}

# PS3.18 Tables 10.6.3-3/-4/-5: the attributes each QIDO-RS result carries. True: type R (present, empty
# when unknown); False: type C ("shall be present if known"). Computed ones (counts, ModalitiesInStudy,
# RetrieveURL, InstanceAvailability) are added by the QIDO-RS edge.
STUDY_RETURN_KEYS: dict[str, bool] = {
    "00080005": False,  # SpecificCharacterSet (how the stored values were encoded; informative in JSON)
    "00080020": True,  # StudyDate
    "00080030": True,  # StudyTime
    "00080050": True,  # AccessionNumber
    "00080090": True,  # ReferringPhysicianName
    "00080201": False,  # TimezoneOffsetFromUTC
    "00100010": True,  # PatientName
    "00100020": True,  # PatientID
    "00100030": True,  # PatientBirthDate
    "00100040": True,  # PatientSex
    "0020000D": True,  # StudyInstanceUID
    "00200010": True,  # StudyID
}
SERIES_RETURN_KEYS: dict[str, bool] = {
    "00080005": False,  # SpecificCharacterSet
    "00080060": True,  # Modality
    "00080201": False,  # TimezoneOffsetFromUTC
    "0008103E": False,  # SeriesDescription
    "0020000E": True,  # SeriesInstanceUID
    "00200011": True,  # SeriesNumber
    "00400244": False,  # PerformedProcedureStepStartDate
    "00400245": False,  # PerformedProcedureStepStartTime
    "00400275": False,  # RequestAttributesSequence
}
INSTANCE_RETURN_KEYS: dict[str, bool] = {
    "00080005": False,  # SpecificCharacterSet
    "00080016": True,  # SOPClassUID
    "00080018": True,  # SOPInstanceUID
    "00080201": False,  # TimezoneOffsetFromUTC
    "00200013": True,  # InstanceNumber
    "00280008": False,  # NumberOfFrames
    "00280010": False,  # Rows
    "00280011": False,  # Columns
    "00280100": False,  # BitsAllocated
}
