"""Errors of the FHIR side; neutral like gateway.errors, mapped to OperationOutcome or task outcomes at the edges."""

from __future__ import annotations

from gateway.errors import GatewayError


class InvalidResource(GatewayError):
    """A resource we built does not validate against its FHIR version's model: a bug, never sent or stored."""


class PushFailed(GatewayError):
    """The EHR's FHIR server did not take a resource."""

    def __init__(self, message: str, http_status: int | None = None, outcome: str | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.outcome = outcome


class PushUnavailable(PushFailed):
    """Transient: the server could not be reached, timed out, or answered 408/425/429/5xx; try again later."""


class PushRejected(PushFailed):
    """Permanent: the server refused the resource (4xx); sending it again unchanged cannot help."""


class UnsupportedFormat(GatewayError):
    """The client asked for a representation other than FHIR JSON (`_format`, `Accept`)."""
