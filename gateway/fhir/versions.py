"""FHIR versions we write (R4 through fhir.resources' R4B models, R5 through its default ones) and validation."""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any, Literal

from pydantic import ValidationError

from gateway.fhir.errors import InvalidResource

FhirVersion = Literal["R4", "R5"]

# CapabilityStatement.fhirVersion: R4 is served as 4.0.1 (ImagingStudy, Patient, Bundle and OperationOutcome are
# unchanged between R4 and R4B, whose models fhir.resources uses to check them).
FHIR_RELEASE: dict[str, str] = {"R4": "4.0.1", "R5": "5.0.0"}
_PACKAGES: dict[str, str] = {"R4": "fhir.resources.R4B", "R5": "fhir.resources"}


@cache
def model_class(version: FhirVersion, resource_type: str) -> Any:
    """Return the fhir.resources model class of `resource_type` for `version`."""
    module = importlib.import_module(f"{_PACKAGES[version]}.{resource_type.lower()}")
    return getattr(module, resource_type)


def validate(resource: dict[str, Any], version: FhirVersion) -> dict[str, Any]:
    """Return `resource` unchanged when it validates with fhir.resources for `version`.

    Raises InvalidResource naming the first offending element otherwise.
    """
    resource_type = str(resource.get("resourceType", ""))
    try:
        model = model_class(version, resource_type)
    except (ImportError, AttributeError):
        raise InvalidResource(f"unknown FHIR resource type {resource_type!r}") from None
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidResource(f"{resource_type} is not valid FHIR {version}: {where}: {first['msg']}") from exc
    return resource
