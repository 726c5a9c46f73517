"""The Patient of an ImagingStudy: identifier from PatientID + issuer (PS3.3 C.7.1.1), and the Patient resource."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from gateway.fhir.dicom_values import DicomJson, fhir_date, human_names, items, person_name, readable_name, text
from gateway.fhir.versions import FhirVersion, validate

_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
# PS3.3 C.7.1.1.1.1 Patient's Sex (M, F, O) to FHIR AdministrativeGender.
_GENDER = {"M": "male", "F": "female", "O": "other"}


@dataclass(frozen=True)
class PatientKey:
    """A patient as the index knows it: PatientID and IssuerOfPatientID."""

    patient_id: str
    issuer_of_patient_id: str


def universal_system(uid: str | None, kind: str | None) -> str | None:
    """Return a FHIR identifier system for a Universal Entity ID and its type (PS3.3 10.14: ISO, URI, UUID)."""
    if not uid:
        return None
    kind = (kind or "").upper()
    if kind == "ISO" and _OID.match(uid):
        return f"urn:oid:{uid}"
    if kind == "UUID":
        return f"urn:uuid:{uid.lower()}"
    if kind == "URI" and ":" in uid:
        return uid
    return None


def issuer_system(attrs: DicomJson, issuer: str) -> str | None:
    """Return the identifier system of the patient ID's issuer, when it is a URI or an OID; else None."""
    for qualifiers in items(attrs, "00100024"):  # IssuerOfPatientIDQualifiersSequence
        found = universal_system(text(qualifiers, "00400032"), text(qualifiers, "00400033"))
        if found:
            return found
    if _OID.match(issuer):
        return f"urn:oid:{issuer}"
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$", issuer):
        return issuer
    return None


def patient_identifier(key: PatientKey, attrs: DicomJson) -> dict[str, Any] | None:
    """Return the FHIR Identifier of the patient, or None when the study has no Patient ID."""
    if not key.patient_id:
        return None
    identifier: dict[str, Any] = {}
    system = issuer_system(attrs, key.issuer_of_patient_id)
    if system:
        identifier["system"] = system
    identifier["value"] = key.patient_id
    if key.issuer_of_patient_id and key.issuer_of_patient_id != system:
        # A local issuer name is not a URI: keep it as the assigner, as IHE RAD maps IssuerOfPatientID.
        identifier["assigner"] = {"display": key.issuer_of_patient_id}
    return identifier


def patient_resource_id(key: PatientKey) -> str:
    """Return the stable FHIR id of a patient's Patient resource (a digest: IDs may hold any characters)."""
    digest = hashlib.sha256(f"{key.issuer_of_patient_id}\x1f{key.patient_id}".encode()).hexdigest()
    return f"p-{digest[:40]}"


def patient_resource(key: PatientKey, attrs: DicomJson, version: FhirVersion) -> dict[str, Any] | None:
    """Map the patient module of a study's DICOM JSON to a Patient resource; None without a Patient ID.

    Raises InvalidResource when the result does not validate (a bug in this mapping).
    """
    identifier = patient_identifier(key, attrs)
    if identifier is None:
        return None
    resource: dict[str, Any] = {"resourceType": "Patient", "id": patient_resource_id(key), "identifier": [identifier]}
    name = person_name(attrs, "00100010")
    if name is not None:
        resource["name"] = human_names(name)
    gender = _GENDER.get((text(attrs, "00100040") or "").upper())
    if gender:
        resource["gender"] = gender
    birth_date = fhir_date(text(attrs, "00100030"))
    if birth_date:
        resource["birthDate"] = birth_date
    return validate(resource, version)


def patient_display(attrs: DicomJson) -> str | None:
    """Return the patient's name for Reference.display, or None."""
    name = person_name(attrs, "00100010")
    return readable_name(name) if name else None
