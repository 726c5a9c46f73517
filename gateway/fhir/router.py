"""The /fhir REST API (read-only: metadata, read, vread, search) and the /api/fhir admin view of pushes.

Errors are OperationOutcome resources (FHIR R4 http.html#summary), not problem+json: FHIR clients expect them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import orjson
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.errors import GatewayError, IndexUnavailable, InvalidQuery, NotFound
from gateway.fhir.capability import capability_statement
from gateway.fhir.errors import UnsupportedFormat
from gateway.fhir.push import PushStates
from gateway.fhir.search import parse_search
from gateway.fhir.service import mapping_options
from gateway.fhir.store import FhirStore
from gateway.services import Services

log = structlog.get_logger(__name__)

FHIR_JSON = "application/fhir+json"
_JSON_FORMATS = frozenset({"json", "application/json", FHIR_JSON, "application/json+fhir"})
_RESOURCE_TYPES = ("ImagingStudy", "Patient")
# FHIR R4 OperationOutcome issue type (IssueType) and HTTP status per error.
_OUTCOMES: tuple[tuple[type[GatewayError], int, str], ...] = (
    (InvalidQuery, 400, "invalid"),
    (NotFound, 404, "not-found"),
    (UnsupportedFormat, 406, "not-supported"),
    (IndexUnavailable, 503, "transient"),
)


def fhir_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Return `body` as application/fhir+json."""
    return Response(orjson.dumps(body), status_code=status, media_type=f"{FHIR_JSON}; charset=utf-8", headers=headers)


def operation_outcome(status: int, code: str, diagnostics: str, expression: str | None = None) -> Response:
    """Return an OperationOutcome with one error issue."""
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return fhir_response({"resourceType": "OperationOutcome", "issue": [issue]}, status)


def _check_format(request: Request) -> None:
    # http.html#mime-type: `_format` overrides Accept; we only produce JSON.
    wanted = request.query_params.get("_format")
    if wanted is not None:
        if wanted.split(";")[0].strip() not in _JSON_FORMATS:
            raise UnsupportedFormat(f"_format {wanted!r} is not supported; only FHIR JSON is")
        return
    accept = request.headers.get("accept", "")
    if not accept:
        return
    ranges = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if not any(r in _JSON_FORMATS or r in ("*/*", "application/*") for r in ranges):
        raise UnsupportedFormat(f"cannot produce {accept!r}; only {FHIR_JSON}")


def _handle(request: Request, action: Callable[[], Response]) -> Response:
    try:
        _check_format(request)
        return action()
    except GatewayError as exc:
        for kind, status, code in _OUTCOMES:
            if isinstance(exc, kind):
                log.warning("fhir.http.error", path=request.url.path, status=status, reason=str(exc))
                expression = exc.parameter if isinstance(exc, InvalidQuery) else None
                return operation_outcome(status, code, str(exc), expression)
        log.error("fhir.http.error.unmapped", path=request.url.path, reason=str(exc))
    except Exception:
        log.exception("fhir.http.error.unexpected", path=request.url.path)
    return operation_outcome(500, "exception", "the request failed; see the gateway log")


def make_router(services: Services) -> APIRouter:
    """Return the /fhir routes bound to `services`."""
    router = APIRouter(prefix="/fhir", tags=["FHIR"])
    store = FhirStore(services.engine)
    settings = services.settings
    zone = mapping_options(settings).zone

    def base(request: Request) -> str:
        return (settings.public_url or str(request.base_url)).rstrip("/") + "/fhir"

    @router.get("/metadata", summary="CapabilityStatement")
    def metadata(request: Request) -> Response:
        return _handle(request, lambda: fhir_response(capability_statement(settings.fhir_version, base(request))))

    def search(request: Request, resource_type: str) -> Response:
        params = list(request.query_params.multi_items())
        lenient = "handling=lenient" in request.headers.get("prefer", "").replace(" ", "")
        query = parse_search(resource_type, params, zone, lenient)
        total, resources = store.search(resource_type, query)
        root = f"{base(request)}/{resource_type}"
        kept = [(k, v) for k, v in params if k not in ("_count", "_offset")]

        def page(offset: int) -> str:
            return f"{root}?{urlencode([*kept, ('_count', str(query.count)), ('_offset', str(offset))])}"

        links = [{"relation": "self", "url": page(query.offset)}]
        # search.html#paging: a next link while matches remain beyond this page.
        if query.count and query.offset + query.count < total:
            links.append({"relation": "next", "url": page(query.offset + query.count)})
        if query.offset > 0 and query.count:
            links.append({"relation": "previous", "url": page(max(query.offset - query.count, 0))})
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "link": links,
            "entry": [{"fullUrl": f"{root}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in resources],
        }
        if not bundle["entry"]:
            del bundle["entry"]
        return fhir_response(bundle)

    def read(resource_type: str, resource_id: str, version_id: str | None = None) -> Response:
        if version_id is not None and not version_id.isdigit():
            raise NotFound(f"{resource_type}/{resource_id}/_history/{version_id} is not known")
        resource = store.read(resource_type, resource_id, int(version_id) if version_id is not None else None)
        meta = resource["meta"]
        # http.html#read: ETag W/"versionId" and Last-Modified from meta.
        headers = {"ETag": f'W/"{meta["versionId"]}"', "Last-Modified": meta["lastUpdated"]}
        return fhir_response(resource, headers=headers)

    for resource_type in _RESOURCE_TYPES:

        def bind(kind: str) -> None:
            @router.get(f"/{kind}", summary=f"Search {kind}", name=f"search_{kind}")
            def search_type(request: Request) -> Response:
                return _handle(request, lambda: search(request, kind))

            @router.get(f"/{kind}/{{resource_id}}", summary=f"Read {kind}", name=f"read_{kind}")
            def read_type(request: Request, resource_id: str) -> Response:
                return _handle(request, lambda: read(kind, resource_id))

            @router.get(
                f"/{kind}/{{resource_id}}/_history/{{version_id}}",
                summary=f"Read a {kind} version",
                name=f"vread_{kind}",
            )
            def vread_type(request: Request, resource_id: str, version_id: str) -> Response:
                return _handle(request, lambda: read(kind, resource_id, version_id))

        bind(resource_type)

    @router.get("/{path:path}", include_in_schema=False)
    def unsupported(request: Request, path: str) -> Response:
        return operation_outcome(404, "not-supported", f"/fhir/{path} is not supported; see /fhir/metadata")

    return router


def make_admin_router(services: Services) -> APIRouter:
    """Return /api/fhir: where pushes to the EHR's FHIR server stand (failed ones with the server's outcome)."""
    router = APIRouter(prefix="/api/fhir", tags=["admin"])
    states = PushStates(services.engine)

    @router.get("/push", summary="Push states (status=failed|retrying|sent|pending)")
    def push_states(status: str | None = None, limit: int = 100) -> JSONResponse:
        if status is not None and status not in ("pending", "retrying", "sent", "failed"):
            raise InvalidQuery("status", "one of pending, retrying, sent, failed")
        if not 1 <= limit <= 1000:
            raise InvalidQuery("limit", "must be between 1 and 1000")
        found = states.list(status, limit)
        return JSONResponse({"target": services.settings.fhir_push_url, "pushes": [s.as_json() for s in found]})

    return router
