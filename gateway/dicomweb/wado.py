"""WADO-RS (PS3.18 10.4): instances, metadata, frames and bulk data of studies, series and instances."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC
from email.utils import format_datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from gateway.dicom.frames import PIXEL_DATA_TAG
from gateway.dicom.uids import validate_uid
from gateway.dicomweb.media import (
    DICOM,
    DICOM_JSON,
    OCTET_STREAM,
    accepts,
    frame_media_type,
    negotiate_multipart,
    parse_accept,
)
from gateway.dicomweb.multipart import Part, content_type, new_boundary, write_multipart
from gateway.errors import InvalidQuery, NotAcceptable
from gateway.index.retrieve import StoredInstance
from gateway.retrieval import RetrievalService
from gateway.services import Services


def base_url(services: Services, request: Request) -> str:
    """The external base URL (GATEWAY_PUBLIC_URL, else the request's), without a trailing slash."""
    return (services.settings.public_url or str(request.base_url)).rstrip("/")


def parse_frame_list(text: str) -> list[int]:
    """PS3.18 10.4.1.1.3: a comma-separated list of 1-based frame numbers; raise InvalidQuery otherwise."""
    try:
        numbers = [int(item) for item in text.split(",")]
    except ValueError:
        raise InvalidQuery("frames", f"{text!r} is not a comma-separated list of frame numbers") from None
    if not numbers or any(n < 1 for n in numbers):
        raise InvalidQuery("frames", "frame numbers start at 1")
    return numbers


def _frames_wanted(accept: str | None, stored_media_type: str) -> bool:
    """Return True to decode frames to native pixels, False to send them as stored (PS3.18 8.7.4)."""
    for media_range in parse_accept(accept):
        if media_range.media_type in ("*/*", "multipart/*"):
            return False
        if media_range.media_type != "multipart/related":
            continue
        wanted = media_range.part_type
        if wanted in (None, "*", "*/*", stored_media_type):
            return False
        if wanted.endswith("/*") and stored_media_type.startswith(wanted[:-1]):
            return False
        if wanted == OCTET_STREAM:
            return True
    raise NotAcceptable(f'frames are available as multipart/related; type="{stored_media_type}" or native')


def make_router(services: Services) -> APIRouter:
    """Return the WADO-RS router bound to `services`."""
    router = APIRouter()
    retrieval = RetrievalService(services)

    def retrieve(request: Request, study: str, series: str | None, sop: str | None) -> StreamingResponse:
        syntax = negotiate_multipart(request.headers.get("accept"), DICOM, "this resource")
        items = retrieval.instances(*uids(study, series, sop))
        retrieval.check_servable(items, syntax)
        boundary = new_boundary()

        def parts() -> Iterator[Part]:
            for item in items:
                sent = item.transfer_syntax_uid if syntax == "*" else syntax
                headers = {"Content-Type": f"{DICOM}; transfer-syntax={sent}"}
                yield Part(headers, retrieval.object_chunks(item, syntax))

        header = content_type(DICOM, boundary, None if syntax == "*" else syntax)
        return StreamingResponse(write_multipart(parts(), boundary), media_type=header)

    def metadata(request: Request, study: str, series: str | None, sop: str | None) -> Response:
        if not accepts(request.headers.get("accept"), DICOM_JSON) and not accepts(
            request.headers.get("accept"), "application/json"
        ):
            raise NotAcceptable("metadata is available as application/dicom+json")
        texts, indexed = retrieval.metadata(*uids(study, series, sop))
        # The stored JSON is served as is, joined without parsing; only the relative BulkDataURIs
        # become absolute for this request's base URL (PS3.18 F.2.6: a URI the client can follow).
        body = ("[" + ",".join(texts) + "]").encode()
        body = body.replace(
            b'"BulkDataURI":"/dicomweb/', f'"BulkDataURI":"{base_url(services, request)}/dicomweb/'.encode()
        )
        # Viewers poll metadata; a strong validator from the body lets them revalidate with one 304.
        etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
        headers = {
            "ETag": etag,
            "Last-Modified": format_datetime(indexed.replace(tzinfo=indexed.tzinfo or UTC), usegmt=True),
        }
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=DICOM_JSON, headers=headers)

    @router.get("/studies/{study}", summary="WADO-RS: retrieve a study")
    def retrieve_study(request: Request, study: str) -> StreamingResponse:
        return retrieve(request, study, None, None)

    @router.get("/studies/{study}/series/{series}", summary="WADO-RS: retrieve a series")
    def retrieve_series(request: Request, study: str, series: str) -> StreamingResponse:
        return retrieve(request, study, series, None)

    @router.get("/studies/{study}/series/{series}/instances/{sop}", summary="WADO-RS: retrieve an instance")
    def retrieve_instance(request: Request, study: str, series: str, sop: str) -> StreamingResponse:
        return retrieve(request, study, series, sop)

    @router.get("/studies/{study}/metadata", summary="WADO-RS: study metadata")
    def study_metadata(request: Request, study: str) -> Response:
        return metadata(request, study, None, None)

    @router.get("/studies/{study}/series/{series}/metadata", summary="WADO-RS: series metadata")
    def series_metadata(request: Request, study: str, series: str) -> Response:
        return metadata(request, study, series, None)

    @router.get("/studies/{study}/series/{series}/instances/{sop}/metadata", summary="WADO-RS: instance metadata")
    def instance_metadata(request: Request, study: str, series: str, sop: str) -> Response:
        return metadata(request, study, series, sop)

    @router.get("/studies/{study}/series/{series}/instances/{sop}/frames/{frames}", summary="WADO-RS: frames")
    def frames(request: Request, study: str, series: str, sop: str, frames: str) -> StreamingResponse:
        numbers = parse_frame_list(frames)
        item = retrieval.instances(*uids(study, series, sop))[0]
        return _frames_response(retrieval, request, item, numbers)

    @router.get("/studies/{study}/series/{series}/instances/{sop}/bulkdata/{tag}", summary="WADO-RS: bulk data")
    def bulkdata(request: Request, study: str, series: str, sop: str, tag: str) -> StreamingResponse:
        item = retrieval.instances(*uids(study, series, sop))[0]
        if tag.upper() == f"{PIXEL_DATA_TAG:08X}":
            # PS3.18 8.6.1.2: pixel data bulk data is the frames, one part per frame.
            return _frames_response(retrieval, request, item, list(range(1, (item.number_of_frames or 1) + 1)))
        negotiate_multipart(request.headers.get("accept"), OCTET_STREAM, "bulk data")
        value = retrieval.bulkdata(item, tag)
        boundary = new_boundary()
        body = write_multipart([Part({"Content-Type": OCTET_STREAM}, [value])], boundary)
        return StreamingResponse(body, media_type=content_type(OCTET_STREAM, boundary))

    return router


def _frames_response(
    retrieval: RetrievalService, request: Request, item: StoredInstance, numbers: list[int]
) -> StreamingResponse:
    stored_type = frame_media_type(item.transfer_syntax_uid)
    decoded = _frames_wanted(request.headers.get("accept"), stored_type)
    part_type = OCTET_STREAM if decoded else stored_type
    syntax = "1.2.840.10008.1.2.1" if part_type == OCTET_STREAM else item.transfer_syntax_uid
    if decoded:
        retrieval.check_servable([item], syntax)
    frames = retrieval.frames(item, numbers, decoded)  # checks the numbers now, reads while streaming
    boundary = new_boundary()
    part_header = {"Content-Type": f"{part_type}; transfer-syntax={syntax}"}
    body = write_multipart((Part(dict(part_header), [frame]) for frame in frames), boundary)
    return StreamingResponse(body, media_type=content_type(part_type, boundary, syntax))


def uids(study: str, series: str | None, sop: str | None) -> tuple[str, str | None, str | None]:
    return (
        validate_uid(study, "StudyInstanceUID"),
        validate_uid(series, "SeriesInstanceUID") if series is not None else None,
        validate_uid(sop, "SOPInstanceUID") if sop is not None else None,
    )
