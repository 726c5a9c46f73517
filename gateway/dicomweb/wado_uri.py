"""WADO-URI (PS3.18 9): one instance by query parameters, as DICOM or as a rendered image.

Older viewers and EHR links still use it: `GET /dicomweb/wado?requestType=WADO&studyUID=…&seriesUID=…
&objectUID=…[&contentType=application/dicom|image/jpeg|image/png]`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from gateway.dicom.render import JPEG, PNG, RenderOptions, parse_options, render_frame
from gateway.dicomweb.media import DICOM
from gateway.dicomweb.wado import uids
from gateway.errors import InvalidQuery, NotAcceptable
from gateway.retrieval import RetrievalService
from gateway.services import Services


def make_router(services: Services) -> APIRouter:
    """Return the WADO-URI router bound to `services`."""
    router = APIRouter()
    retrieval = RetrievalService(services)

    @router.get("/wado", summary="WADO-URI: retrieve one instance")
    async def wado(
        requestType: Annotated[str, Query()],  # noqa: N803 - PS3.18 9.1.2 parameter names
        studyUID: Annotated[str, Query()],  # noqa: N803
        seriesUID: Annotated[str, Query()],  # noqa: N803
        objectUID: Annotated[str, Query()],  # noqa: N803
        contentType: Annotated[str | None, Query()] = None,  # noqa: N803
        transferSyntax: Annotated[str | None, Query()] = None,  # noqa: N803
        frameNumber: Annotated[int, Query(ge=1)] = 1,  # noqa: N803
        windowCenter: Annotated[float | None, Query()] = None,  # noqa: N803
        windowWidth: Annotated[float | None, Query()] = None,  # noqa: N803
        rows: Annotated[int | None, Query(ge=1, le=8192)] = None,
        columns: Annotated[int | None, Query(ge=1, le=8192)] = None,
        imageQuality: Annotated[int | None, Query(ge=1, le=100)] = None,  # noqa: N803
    ) -> Response:
        if requestType != "WADO":
            raise InvalidQuery("requestType", "must be WADO")
        item = retrieval.instances(*uids(studyUID, seriesUID, objectUID))[0]
        # PS3.18 9.1.2.1.5: the first acceptable of a comma-separated list; image/jpeg by default.
        wanted = [t.strip().split(";")[0] for t in (contentType or JPEG).split(",") if t.strip()]
        for media_type in wanted:
            if media_type == DICOM:
                syntax = transferSyntax or "*"  # WADO-URI returns what was stored unless told otherwise
                retrieval.check_servable([item], syntax)
                return StreamingResponse(retrieval.object_chunks(item, syntax), media_type=DICOM)
            if media_type in (JPEG, PNG, "image/*", "*/*"):
                if (windowCenter is None) != (windowWidth is None):
                    raise InvalidQuery("windowWidth", "windowCenter and windowWidth go together")
                window = f"{windowCenter},{windowWidth}" if windowCenter is not None else None
                # PS3.18 9.1.2.1.10-11: each bounds its own dimension; aspect ratio is kept.
                viewport = f"{columns or 8192},{rows or 8192}" if rows or columns else None
                quality = str(imageQuality) if imageQuality else None
                options: RenderOptions = parse_options(PNG if media_type == PNG else JPEG, window, viewport, quality)
                data = await run_in_threadpool(retrieval.store.read, item.object_key)
                image = await run_in_threadpool(render_frame, data, frameNumber, options)
                return Response(image, media_type=options.media_type)
        raise NotAcceptable("WADO-URI serves application/dicom, image/jpeg and image/png")

    return router
