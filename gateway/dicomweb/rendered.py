"""WADO-RS rendered and thumbnail resources (PS3.18 10.4.1.1.3, 8.3.5): JPEG or PNG for people to look at."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from gateway.dicom.render import JPEG, PNG, RenderOptions, parse_options, render_frame
from gateway.dicomweb.media import parse_accept
from gateway.dicomweb.multipart import Part, content_type, new_boundary, write_multipart
from gateway.dicomweb.wado import parse_frame_list, uids
from gateway.errors import NotAcceptable
from gateway.index.retrieve import StoredInstance
from gateway.retrieval import RetrievalService
from gateway.services import Services

THUMBNAIL_VIEWPORT = (128, 128)


def _media_type(accept: str | None) -> str:
    for media_range in parse_accept(accept):
        wanted = media_range.part_type if media_range.media_type == "multipart/related" else media_range.media_type
        if wanted in (JPEG, PNG):
            return wanted
        if wanted in (None, "*/*", "image/*", "*"):
            return JPEG
    raise NotAcceptable("rendered images are available as image/jpeg or image/png")


def make_router(services: Services) -> APIRouter:
    """Return the rendered/thumbnail router bound to `services`."""
    router = APIRouter()
    retrieval = RetrievalService(services)

    def options(request: Request, window: str | None, viewport: str | None, quality: str | None) -> RenderOptions:
        return parse_options(_media_type(request.headers.get("accept")), window, viewport, quality)

    async def render(item: StoredInstance, number: int, opts: RenderOptions) -> bytes:
        data = await run_in_threadpool(retrieval.store.read, item.object_key)
        return await run_in_threadpool(render_frame, data, number, opts)

    def many(items: list[StoredInstance], numbers: list[int] | None, opts: RenderOptions) -> StreamingResponse:
        boundary = new_boundary()

        def parts() -> Iterator[Part]:
            for item in items:
                data = retrieval.store.read(item.object_key)  # once per instance, not per frame
                for number in numbers or [1]:
                    image = render_frame(data, number, opts)
                    yield Part({"Content-Type": opts.media_type}, [image])

        return StreamingResponse(write_multipart(parts(), boundary), media_type=content_type(opts.media_type, boundary))

    def representative(items: list[StoredInstance]) -> tuple[StoredInstance, int]:
        # The middle instance of the study or series, and its middle frame: what a person expects.
        item = items[len(items) // 2]
        return item, ((item.number_of_frames or 1) + 1) // 2

    Window = Query(None, description="center,width[,linear]")
    Viewport = Query(None, description="columns,rows")
    Quality = Query(None, description="1-100 (JPEG)")

    @router.get("/studies/{study}/rendered", summary="WADO-RS: rendered study")
    def study_rendered(
        request: Request,
        study: str,
        window: str | None = Window,
        viewport: str | None = Viewport,
        quality: str | None = Quality,
    ) -> StreamingResponse:
        opts = options(request, window, viewport, quality)
        return many(retrieval.instances(*uids(study, None, None)), None, opts)

    @router.get("/studies/{study}/series/{series}/rendered", summary="WADO-RS: rendered series")
    def series_rendered(
        request: Request,
        study: str,
        series: str,
        window: str | None = Window,
        viewport: str | None = Viewport,
        quality: str | None = Quality,
    ) -> StreamingResponse:
        opts = options(request, window, viewport, quality)
        return many(retrieval.instances(*uids(study, series, None)), None, opts)

    @router.get("/studies/{study}/series/{series}/instances/{sop}/rendered", summary="WADO-RS: rendered instance")
    async def instance_rendered(
        request: Request,
        study: str,
        series: str,
        sop: str,
        window: str | None = Window,
        viewport: str | None = Viewport,
        quality: str | None = Quality,
    ) -> Response:
        opts = options(request, window, viewport, quality)
        item = retrieval.instances(*uids(study, series, sop))[0]
        return Response(await render(item, 1, opts), media_type=opts.media_type)

    @router.get(
        "/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/rendered", summary="WADO-RS: rendered frames"
    )
    async def frames_rendered(
        request: Request,
        study: str,
        series: str,
        sop: str,
        frames: str,
        window: str | None = Window,
        viewport: str | None = Viewport,
        quality: str | None = Quality,
    ) -> Response:
        opts = options(request, window, viewport, quality)
        numbers = parse_frame_list(frames)
        item = retrieval.instances(*uids(study, series, sop))[0]
        if len(numbers) == 1:
            return Response(await render(item, numbers[0], opts), media_type=opts.media_type)
        return many([item], numbers, opts)

    async def thumbnail(request: Request, items: list[StoredInstance], frame: int | None = None) -> Response:
        opts = parse_options(_media_type(request.headers.get("accept")), None, None, None)
        opts = RenderOptions(opts.media_type, None, THUMBNAIL_VIEWPORT, 80)
        item, middle = representative(items)
        return Response(await render(item, frame or middle, opts), media_type=opts.media_type)

    @router.get("/studies/{study}/thumbnail", summary="WADO-RS: study thumbnail")
    async def study_thumbnail(request: Request, study: str) -> Response:
        return await thumbnail(request, retrieval.instances(*uids(study, None, None)))

    @router.get("/studies/{study}/series/{series}/thumbnail", summary="WADO-RS: series thumbnail")
    async def series_thumbnail(request: Request, study: str, series: str) -> Response:
        return await thumbnail(request, retrieval.instances(*uids(study, series, None)))

    @router.get("/studies/{study}/series/{series}/instances/{sop}/thumbnail", summary="WADO-RS: instance thumbnail")
    async def instance_thumbnail(request: Request, study: str, series: str, sop: str) -> Response:
        return await thumbnail(request, retrieval.instances(*uids(study, series, sop)))

    @router.get(
        "/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/thumbnail", summary="WADO-RS: frame thumbnail"
    )
    async def frame_thumbnail(request: Request, study: str, series: str, sop: str, frame: str) -> Response:
        numbers = parse_frame_list(frame)
        return await thumbnail(request, retrieval.instances(*uids(study, series, sop)), numbers[0])

    return router
