"""Pure mapping from a study's index rows to a FHIR ImagingStudy (R4 by default, R5 by setting).

FHIR R4 ImagingStudy (https://hl7.org/fhir/R4/imagingstudy.html) and its DICOM mapping table; R5 differs in
CodeableConcept/CodeableReference for modality, bodySite, laterality and procedure, and in Endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from pydicom.uid import UID

from gateway.fhir.bodysite import SNOMED_CT, body_site
from gateway.fhir.dicom_values import (
    CODING_SYSTEMS,
    DateTimeValue,
    DicomJson,
    codeable_concepts,
    date_time,
    items,
    parse_offset,
    person_name,
    readable_name,
    text,
)
from gateway.fhir.patient import (
    PatientKey,
    patient_display,
    patient_identifier,
    patient_resource_id,
    universal_system,
)
from gateway.fhir.versions import FhirVersion, validate

DICOM_UID_SYSTEM = "urn:dicom:uid"
RFC3986 = "urn:ietf:rfc:3986"
DCM = CODING_SYSTEMS["DCM"]
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
CONNECTION_TYPE = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
ENDPOINT_ID = "dicomweb"
# DICOM CID 244 Laterality (bound by R5; R4's binding is only an example): (0020,0060)/(0020,0062) values.
LATERALITY = {
    "L": ("7771000", "Left"),
    "R": ("24028007", "Right"),
    "B": ("51440002", "Right and left"),
    "U": ("66459002", "Unilateral"),
}


@dataclass(frozen=True)
class InstanceSnapshot:
    """One indexed instance: its UIDs, number and header (DICOM JSON)."""

    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    attributes: DicomJson


@dataclass(frozen=True)
class SeriesSnapshot:
    """One indexed series; `attributes` is its series-level JSON over the header of its first instance."""

    series_instance_uid: str
    modality: str | None
    series_number: int | None
    attributes: DicomJson
    instances: tuple[InstanceSnapshot, ...]


@dataclass(frozen=True)
class StudySnapshot:
    """A study as the index holds it; `attributes` is its study-level JSON over the header of its first instance."""

    study_instance_uid: str
    patient: PatientKey
    attributes: DicomJson
    series: tuple[SeriesSnapshot, ...]

    @property
    def number_of_instances(self) -> int:
        """Instances in the study."""
        return sum(len(one.instances) for one in self.series)

    @property
    def modalities(self) -> list[str]:
        """ModalitiesInStudy as the index computes it: the distinct series modalities, sorted."""
        return sorted({one.modality for one in self.series if one.modality})


@dataclass(frozen=True)
class MappingOptions:
    """What the mapping needs beyond the study: FHIR version, our DICOMweb base URL, the fallback time zone."""

    dicomweb_url: str
    version: FhirVersion = "R4"
    # Used when a study has no TimezoneOffsetFromUTC (0008,0201); None: dates without times.
    zone: tzinfo | None = None


def _concept(coding: dict[str, Any], version: FhirVersion) -> dict[str, Any]:
    # R4 types these elements as Coding, R5 as CodeableConcept.
    if version == "R4":
        return coding
    concept: dict[str, Any] = {"coding": [coding]} if "code" in coding else {}
    if "display" in coding:
        concept["text"] = coding["display"]
    return concept


def _absent() -> dict[str, Any]:
    # FHIR R4 "data-absent-reason": a required element whose value the DICOM study does not have.
    return {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "unknown"}]}


def _zone(attrs: DicomJson, options: MappingOptions) -> tzinfo | None:
    return parse_offset(text(attrs, "00080201")) or options.zone


def _started(attrs: DicomJson, date_tag: str, time_tag: str, zone: tzinfo | None) -> DateTimeValue | None:
    return date_time(text(attrs, date_tag), text(attrs, time_tag), zone)


def study_started(snapshot: StudySnapshot, options: MappingOptions) -> DateTimeValue | None:
    """Return ImagingStudy.started: StudyDate + StudyTime, in TimezoneOffsetFromUTC or the configured zone."""
    return _started(snapshot.attributes, "00080020", "00080030", _zone(snapshot.attributes, options))


def _identifiers(snapshot: StudySnapshot) -> list[dict[str, Any]]:
    attrs = snapshot.attributes
    result: list[dict[str, Any]] = [
        {"use": "official", "system": DICOM_UID_SYSTEM, "value": f"urn:oid:{snapshot.study_instance_uid}"}
    ]
    accession = text(attrs, "00080050")
    if accession:
        identifier: dict[str, Any] = {
            "use": "usual",
            "type": {"coding": [{"system": V2_0203, "code": "ACSN", "display": "Accession ID"}]},
        }
        for issuer in items(attrs, "00080051")[:1]:  # IssuerOfAccessionNumberSequence (PS3.3 10.14)
            system = universal_system(text(issuer, "00400032"), text(issuer, "00400033"))
            if system:
                identifier["system"] = system
            local = text(issuer, "00400031")
            if local:
                identifier["assigner"] = {"display": local}
        identifier["value"] = accession
        result.append(identifier)
    study_id = text(attrs, "00200010")
    if study_id:
        result.append({"use": "secondary", "type": {"text": "Study ID"}, "value": study_id})
    return result


def _subject(snapshot: StudySnapshot) -> dict[str, Any]:
    identifier = patient_identifier(snapshot.patient, snapshot.attributes)
    display = patient_display(snapshot.attributes)
    subject: dict[str, Any] = {}
    if identifier is not None:
        subject["reference"] = f"Patient/{patient_resource_id(snapshot.patient)}"
    if identifier is not None or display:
        subject["type"] = "Patient"
    if identifier is not None:
        subject["identifier"] = identifier
    if display:
        subject["display"] = display
    return subject or _absent()


def _endpoint(options: MappingOptions) -> dict[str, Any]:
    connection = {"system": CONNECTION_TYPE, "code": "dicom-wado-rs", "display": "DICOM WADO-RS"}
    endpoint: dict[str, Any] = {"resourceType": "Endpoint", "id": ENDPOINT_ID, "status": "active"}
    if options.version == "R4":
        endpoint["connectionType"] = connection
        endpoint["name"] = "DICOMweb"
        endpoint["payloadType"] = [{"text": "DICOM"}]
        endpoint["payloadMimeType"] = ["application/dicom"]
    else:
        endpoint["connectionType"] = [{"coding": [connection]}]
        endpoint["name"] = "DICOMweb"
        endpoint["payload"] = [{"type": [{"text": "DICOM"}], "mimeType": ["application/dicom"]}]
    endpoint["address"] = options.dicomweb_url
    return endpoint


def _body_site(attrs: DicomJson, version: FhirVersion) -> dict[str, Any] | None:
    term = text(attrs, "00180015")
    if term is None:
        return None
    mapped = body_site(term)
    # PS3.16 Annex L maps the defined terms to SNOMED CT; anything else is kept as text, never guessed.
    coding = {"system": SNOMED_CT, "code": mapped[0], "display": mapped[1]} if mapped else {"display": term}
    if version == "R4":
        return coding
    concept = {"coding": [coding], "text": coding["display"]} if mapped else {"text": term}
    return {"concept": concept}


def _laterality(attrs: DicomJson, version: FhirVersion) -> dict[str, Any] | None:
    value = (text(attrs, "00200060") or text(attrs, "00200062") or "").upper()
    if value not in LATERALITY:
        return None
    code, display = LATERALITY[value]
    return _concept({"system": SNOMED_CT, "code": code, "display": display}, version)


def _performers(attrs: DicomJson) -> list[dict[str, Any]]:
    performers = []
    station = text(attrs, "00081010")  # StationName
    if station:
        performers.append({"actor": {"type": "Device", "display": station}})
    institution = text(attrs, "00080080")  # InstitutionName
    if institution:
        performers.append({"actor": {"type": "Organization", "display": institution}})
    return performers


def _instance_title(attrs: DicomJson) -> str | None:
    # DocumentTitle (encapsulated documents), the SR's ConceptNameCodeSequence, ContentLabel (PR, SEG, ...).
    title = text(attrs, "00420010")
    for concept in items(attrs, "0040A043")[:1]:
        title = title or text(concept, "00080104")
    return title or text(attrs, "00700080")


def _instance(instance: InstanceSnapshot) -> dict[str, Any]:
    sop_class: dict[str, Any] = {"system": RFC3986, "code": f"urn:oid:{instance.sop_class_uid}"}
    name = UID(instance.sop_class_uid).name
    if name and name != instance.sop_class_uid:
        sop_class["display"] = name
    result: dict[str, Any] = {"uid": instance.sop_instance_uid, "sopClass": sop_class}
    if instance.instance_number is not None and instance.instance_number >= 0:
        result["number"] = instance.instance_number
    title = _instance_title(instance.attributes)
    if title:
        result["title"] = title
    return result


def _series(series: SeriesSnapshot, zone: tzinfo | None, version: FhirVersion) -> dict[str, Any]:
    attrs = series.attributes
    result: dict[str, Any] = {"uid": series.series_instance_uid}
    if series.series_number is not None and series.series_number >= 0:
        result["number"] = series.series_number
    modality = {"system": DCM, "code": series.modality} if series.modality else _absent()
    result["modality"] = _concept(modality, version) if series.modality else modality
    description = text(attrs, "0008103E")
    if description:
        result["description"] = description
    result["numberOfInstances"] = len(series.instances)
    site = _body_site(attrs, version)
    if site:
        result["bodySite"] = site
    laterality = _laterality(attrs, version)
    if laterality:
        result["laterality"] = laterality
    started = _started(attrs, "00080021", "00080031", zone) or _started(attrs, "00400244", "00400245", zone)
    if started:
        result["started"] = started.text
    performers = _performers(attrs)
    if performers:
        result["performer"] = performers
    result["instance"] = [_instance(one) for one in series.instances]
    return result


def imaging_study(snapshot: StudySnapshot, options: MappingOptions) -> dict[str, Any]:
    """Map a study to an ImagingStudy with status `available`, validated for `options.version`.

    The id is the Study Instance UID (a valid FHIR id: digits and dots, at most 64 characters).
    Raises InvalidResource when the result does not validate (a bug in this mapping, never sent or stored).
    """
    attrs = snapshot.attributes
    version = options.version
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": snapshot.study_instance_uid,
        "contained": [_endpoint(options)],
        "identifier": _identifiers(snapshot),
        "status": "available",
    }
    if snapshot.modalities:
        resource["modality"] = [_concept({"system": DCM, "code": m}, version) for m in snapshot.modalities]
    resource["subject"] = _subject(snapshot)
    started = study_started(snapshot, options)
    if started:
        resource["started"] = started.text
    referrer = person_name(attrs, "00080090")
    if referrer is not None:
        resource["referrer"] = {"type": "Practitioner", "display": readable_name(referrer)}
    resource["endpoint"] = [{"reference": f"#{ENDPOINT_ID}", "type": "Endpoint"}]
    resource["numberOfSeries"] = len(snapshot.series)
    resource["numberOfInstances"] = snapshot.number_of_instances
    procedures = codeable_concepts(attrs, "00081032")  # ProcedureCodeSequence
    if procedures and version == "R4":
        resource["procedureCode"] = procedures
    elif procedures:
        resource["procedure"] = [{"concept": concept} for concept in procedures]
    description = text(attrs, "00081030")
    if description:
        resource["description"] = description
    zone = _zone(attrs, options)
    resource["series"] = [_series(one, zone, version) for one in snapshot.series]
    return validate(resource, version)


def withdrawn(resource: dict[str, Any], version: FhirVersion) -> dict[str, Any]:
    """Return a stored ImagingStudy marked `entered-in-error`: its study is no longer in the gateway.

    FHIR R4 ImagingStudyStatus: entered-in-error = "withdrawn following a previous final release".
    """
    marked = {key: value for key, value in resource.items() if key != "meta"}
    marked["status"] = "entered-in-error"
    return validate(marked, version)
