"""STOW-RS (PS3.18 10.5): store instances sent as multipart/related; type="application/dicom".

Every part goes through the same ingest service as C-STORE; a bad part fails alone and the valid
parts of the same request are stored.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydicom import dcmread
from pydicom.uid import UID

from gateway.dicom.uids import validate_uid
from gateway.dicomweb.media import DICOM, DICOM_JSON, DicomJSONResponse, accepts
from gateway.dicomweb.multipart import ReceivedPart, parse_content_type, read_multipart
from gateway.dicomweb.wado import base_url
from gateway.dimse.status import STORAGE_CANNOT_UNDERSTAND, store_status
from gateway.errors import (
    GatewayError,
    NotAcceptable,
    PayloadTooLarge,
    QueueUnavailable,
    StorageUnavailable,
    UnsupportedMediaType,
)
from gateway.ingest import IngestResult, IngestService
from gateway.services import Services

log = structlog.get_logger(__name__)

# PS3.18 Table 10.5.3-3 / PS3.4 B.2.3: the response dataset's attributes.
RETRIEVE_URL = "00081190"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
REFERENCED_SOP_CLASS_UID = "00081150"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122  # PS3.18 Table 10.5.3-2: referenced transfer syntax not supported


def _identify(data: bytes) -> tuple[str, str, str]:
    # Best effort, only for the failure report: the part may not be DICOM at all.
    try:
        ds = dcmread(BytesIO(data), stop_before_pixels=True, force=True)
        meta = getattr(ds, "file_meta", None)
        syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        return str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", "")), syntax
    except Exception:
        return "", "", ""


def _uid_value(uid: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [uid]} if uid else {"vr": "UI"}


def make_router(services: Services) -> APIRouter:
    """Return the STOW-RS router bound to `services`."""
    router = APIRouter()
    ingest = services.ingest

    async def store(request: Request, study: str | None) -> DicomJSONResponse:
        accept = request.headers.get("accept")
        if not accepts(accept, DICOM_JSON) and not accepts(accept, "application/json"):
            raise NotAcceptable("the STOW-RS response is available as application/dicom+json")
        media_type, params = parse_content_type(request.headers.get("content-type", ""))
        if media_type == "multipart/related" and params.get("type", DICOM).lower() != DICOM:
            raise UnsupportedMediaType(f'parts of type {params["type"]!r} are not accepted; send type="{DICOM}"')
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > services.settings.stow_max_bytes:
            # Refused before a byte of the body is read.
            raise PayloadTooLarge(f"request body of {declared} bytes exceeds {services.settings.stow_max_bytes}")
        parts = await read_multipart(
            request.headers.get("content-type", ""), request.stream(), services.settings.stow_max_bytes
        )
        root = base_url(services, request) + "/dicomweb"
        referenced: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        try:
            for number, part in enumerate(parts, start=1):
                outcome = await run_in_threadpool(_store_part, ingest, part, study)
                if isinstance(outcome, IngestResult):
                    referenced.append(_referenced(outcome, root))
                else:
                    reason, sop_class, sop_instance, error = outcome
                    log.warning("stow.part.failed", part=number, reason=f"0x{reason:04X}", error=error)
                    failed.append(
                        {
                            REFERENCED_SOP_CLASS_UID: _uid_value(sop_class),
                            REFERENCED_SOP_INSTANCE_UID: _uid_value(sop_instance),
                            FAILURE_REASON: {"vr": "US", "Value": [reason]},
                        }
                    )
        finally:
            for part in parts:
                part.close()
        body: dict[str, Any] = {}
        if study is not None:
            body[RETRIEVE_URL] = {"vr": "UR", "Value": [f"{root}/studies/{study}"]}
        if failed:
            body[FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": failed}
        if referenced:
            body[REFERENCED_SOP_SEQUENCE] = {"vr": "SQ", "Value": referenced}
        log.info("stow.stored", stored=len(referenced), failed=len(failed), study=study)
        return DicomJSONResponse(body, status_code=_status(referenced, failed))

    @router.post("/studies", summary="STOW-RS: store instances")
    async def store_instances(request: Request) -> DicomJSONResponse:
        return await store(request, None)

    @router.post("/studies/{study}", summary="STOW-RS: store instances of one study")
    async def store_study_instances(request: Request, study: str) -> DicomJSONResponse:
        return await store(request, validate_uid(study, "StudyInstanceUID"))

    return router


def _store_part(
    ingest: IngestService, part: ReceivedPart, study: str | None
) -> IngestResult | tuple[int, str, str, str]:
    media_type, _ = parse_content_type(part.content_type or DICOM)
    data = part.read()
    if media_type != DICOM:
        return STORAGE_CANNOT_UNDERSTAND, "", "", f"part of type {media_type} is not {DICOM}"
    try:
        return ingest.ingest_file(data, expected_study_uid=study)
    except GatewayError as exc:
        sop_class, sop_instance, transfer_syntax = _identify(data)
        if transfer_syntax and not UID(transfer_syntax).is_transfer_syntax:
            # PS3.18 Table 10.5.3-2: the part's transfer syntax is not one we know.
            return TRANSFER_SYNTAX_NOT_SUPPORTED, sop_class, sop_instance, f"unknown transfer syntax {transfer_syntax}"
        kind = "unavailable" if isinstance(exc, StorageUnavailable | QueueUnavailable) else "rejected"
        return store_status(exc), sop_class, sop_instance, f"{kind}: {exc}"


def _referenced(result: IngestResult, root: str) -> dict[str, Any]:
    url = (
        f"{root}/studies/{result.study_instance_uid}/series/{result.series_instance_uid}"
        f"/instances/{result.sop_instance_uid}"
    )
    return {
        REFERENCED_SOP_CLASS_UID: _uid_value(result.sop_class_uid),
        REFERENCED_SOP_INSTANCE_UID: _uid_value(result.sop_instance_uid),
        RETRIEVE_URL: {"vr": "UR", "Value": [url]},
    }


def _status(referenced: list[dict[str, Any]], failed: list[dict[str, Any]]) -> int:
    """PS3.18 10.5.3.1: 200 all stored, 202 some stored, 409 none stored, 503 none for lack of resources."""
    if not failed:
        return 200
    if referenced:
        return 202
    reasons = {item[FAILURE_REASON]["Value"][0] for item in failed}
    if all(0xA700 <= reason <= 0xA7FF for reason in reasons):
        return 503
    return 409
