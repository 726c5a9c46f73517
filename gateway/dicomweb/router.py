"""The /dicomweb router: one sub-router per PS3.18 transaction."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.dicomweb import delete, qido, rendered, stow, wado, wado_uri
from gateway.services import Services


def make_router(services: Services) -> APIRouter:
    """Return every DICOMweb route bound to `services`."""
    router = APIRouter(prefix="/dicomweb", tags=["DICOMweb"])
    router.include_router(qido.make_router(services))
    router.include_router(wado.make_router(services))
    router.include_router(rendered.make_router(services))
    router.include_router(stow.make_router(services))
    router.include_router(wado_uri.make_router(services))
    router.include_router(delete.make_router(services))
    return router
