"""The CapabilityStatement of /fhir: exactly the interactions and search parameters the router implements."""

from __future__ import annotations

from typing import Any

from gateway import __version__
from gateway.fhir.versions import FHIR_RELEASE, FhirVersion, validate

_DATE = "2026-11-26"
# (name, type, definition, documentation) per resource type; keep in step with search.SEARCH_PARAMETERS.
_SEARCH: dict[str, list[tuple[str, str, str, str]]] = {
    "ImagingStudy": [
        ("_id", "token", "Resource-id", "The Study Instance UID."),
        (
            "_lastUpdated",
            "date",
            "Resource-lastUpdated",
            "When the stored version was made; prefixes eq ne gt lt ge le sa eb.",
        ),
        (
            "identifier",
            "token",
            "clinical-identifier",
            "urn:dicom:uid|urn:oid:<StudyInstanceUID>, accession number, study ID.",
        ),
        ("patient", "reference", "clinical-patient", "Patient/<id> as returned by Patient search."),
        (
            "subject",
            "reference",
            "ImagingStudy-subject",
            "Same as patient. Modifier :identifier matches the patient's identifier.",
        ),
        ("started", "date", "ImagingStudy-started", "StudyDate/StudyTime; prefixes eq ne gt lt ge le sa eb."),
        (
            "modality",
            "token",
            "ImagingStudy-modality",
            "http://dicom.nema.org/resources/ontology/DCM|<code> of any series.",
        ),
        ("status", "token", "ImagingStudy-status", "available, or entered-in-error once the study is deleted."),
    ],
    "Patient": [
        ("_id", "token", "Resource-id", "The Patient id."),
        ("_lastUpdated", "date", "Resource-lastUpdated", "When the stored version was made."),
        ("identifier", "token", "Patient-identifier", "PatientID, with the issuer as system when it is a URI or OID."),
    ],
}
_BASE = "http://hl7.org/fhir/SearchParameter/"


def _resource(resource_type: str) -> dict[str, Any]:
    return {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        "interaction": [{"code": "read"}, {"code": "vread"}, {"code": "search-type"}],
        "versioning": "versioned",
        "readHistory": False,
        "updateCreate": False,
        "searchParam": [
            {"name": name, "definition": f"{_BASE}{definition}", "type": kind, "documentation": text}
            for name, kind, definition, text in _SEARCH[resource_type]
        ],
    }


def capability_statement(version: FhirVersion, base_url: str) -> dict[str, Any]:
    """Return the validated CapabilityStatement for the FHIR base at `base_url` (…/fhir)."""
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _DATE,
        "publisher": "dicom-gateway",
        "kind": "instance",
        "software": {"name": "dicom-gateway", "version": __version__},
        "implementation": {"description": "DICOM imaging gateway: ImagingStudy for stored studies", "url": base_url},
        "fhirVersion": FHIR_RELEASE[version],
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Read-only. Search results are paged with _count (at most 1000) and next links.",
                "resource": [_resource("ImagingStudy"), _resource("Patient")],
            }
        ],
    }
    return validate(statement, version)
