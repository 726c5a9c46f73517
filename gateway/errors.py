"""The gateway's error tree: neutral, typed, and free of wire codes (edges map them)."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A setting has a value the gateway cannot run with."""


class InvalidDicom(GatewayError):
    """The bytes are not a DICOM dataset the gateway can parse (PS3.4 'cannot understand')."""


class InvalidUID(InvalidDicom):
    """A UID is missing or does not follow PS3.5 9.1 (digits and dots, at most 64 characters)."""


class DatasetMismatch(GatewayError):
    """The dataset does not match its command (SOP Class or SOP Instance UID differs)."""


class NotFound(GatewayError):
    """The requested object, study, series or instance does not exist."""


class StorageUnavailable(GatewayError):
    """The object store could not be reached or refused the operation."""


class QueueUnavailable(GatewayError):
    """The task broker could not be reached, so work could not be queued."""


class IndexUnavailable(GatewayError):
    """The index database could not be reached."""


class InvalidQuery(GatewayError):
    """A query parameter is unknown or its value is malformed."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter
        self.reason = reason


class NotAcceptable(GatewayError):
    """No representation the client accepts can be produced (HTTP 406)."""


class UnsupportedMediaType(GatewayError):
    """The request body is not of a media type the resource accepts (HTTP 415)."""


class PayloadTooLarge(GatewayError):
    """The request body exceeds the configured limit (HTTP 413)."""


class Forbidden(GatewayError):
    """The operation is turned off by configuration or not allowed for this caller (HTTP 403)."""
