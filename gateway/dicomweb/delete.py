"""DELETE of studies, series and instances under /dicomweb (as dcm4chee and Orthanc offer; not in PS3.18).

Disabled unless GATEWAY_ALLOW_DELETE is true, since the API has no authentication of its own yet.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from gateway.deletion import DeletionService
from gateway.dicomweb.wado import uids
from gateway.errors import Forbidden
from gateway.fhir.service import FhirService
from gateway.services import Services


def make_router(services: Services) -> APIRouter:
    """Return the DELETE router bound to `services`."""
    router = APIRouter()
    deletion = DeletionService(services.store, services.repository, FhirService.from_services(services).note_change)

    async def remove(study: str, series: str | None, sop: str | None) -> Response:
        if not services.settings.allow_delete:
            raise Forbidden("deleting is disabled; set GATEWAY_ALLOW_DELETE=true to allow it")
        await run_in_threadpool(deletion.delete, *uids(study, series, sop))
        return Response(status_code=204)

    @router.delete("/studies/{study}", status_code=204, summary="Delete a study")
    async def delete_study(study: str) -> Response:
        return await remove(study, None, None)

    @router.delete("/studies/{study}/series/{series}", status_code=204, summary="Delete a series")
    async def delete_series(study: str, series: str) -> Response:
        return await remove(study, series, None)

    @router.delete("/studies/{study}/series/{series}/instances/{sop}", status_code=204, summary="Delete an instance")
    async def delete_instance(study: str, series: str, sop: str) -> Response:
        return await remove(study, series, sop)

    return router
