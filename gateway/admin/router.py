"""Admin HTTP routes under /api: the remote AE registry (/api/aes) and the gateway's status (/api/status)."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from kombu.exceptions import KombuError, OperationalError
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from gateway.admin.ae_titles import AEAlreadyRegistered, AERegistry, RemoteAETitle
from gateway.admin.associations import AssociationLog
from gateway.config import Operation, RemoteAESetting
from gateway.queue import INDEX_QUEUE, CeleryQueue
from gateway.services import Services

log = structlog.get_logger(__name__)


class AECreate(RemoteAESetting):
    """A new registry entry (POST /api/aes): the same fields and checks as a `[[remote_aes]]` setting."""


class AEUpdate(BaseModel):
    """Fields to change in a registry entry (PATCH /api/aes/{ae_title}); absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(default=None, min_length=1, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    description: str | None = None
    operations: list[Operation] | None = None
    tls: bool | None = None
    enabled: bool | None = None


def queue_depth(queue: CeleryQueue) -> int | None:
    """Messages waiting in the index queue, or None when the broker cannot be asked."""
    try:
        with queue.app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            # Declaring a queue of a virtual transport (Redis) creates nothing and reports its length.
            channel: Any = connection.default_channel  # a kombu virtual Channel; its stub lacks queue_declare
            return int(channel.queue_declare(queue=INDEX_QUEUE, passive=False).message_count)
    except (KombuError, OperationalError, RedisError, OSError) as exc:
        log.warning("admin.queue_depth_unavailable", reason=str(exc)[:200])
        return None


def make_router(services: Services) -> APIRouter:
    """Return the /api router for `services`."""
    router = APIRouter(prefix="/api", tags=["admin"])
    registry = AERegistry(services.repository.sessions)
    associations = AssociationLog(services.engine)
    settings = services.settings

    @router.get("/aes", summary="List the registered remote AEs")
    def list_aes() -> list[dict[str, Any]]:
        return [entry.as_dict() for entry in registry.list()]

    @router.post("/aes", status_code=201, summary="Register a remote AE")
    def add_ae(body: AECreate, response: Response) -> dict[str, Any]:
        entry = RemoteAETitle(
            body.ae_title,
            body.host,
            body.port,
            body.description,
            frozenset(body.operations),
            body.tls,
            body.enabled,
        )
        try:
            added = registry.add(entry)
        except AEAlreadyRegistered as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        response.headers["Location"] = f"/api/aes/{added.ae_title}"
        return added.as_dict()

    @router.get("/aes/{ae_title}", summary="One registered remote AE")
    def get_ae(ae_title: str) -> dict[str, Any]:
        return registry.get(ae_title).as_dict()

    @router.patch("/aes/{ae_title}", summary="Change a registered remote AE")
    def update_ae(ae_title: str, body: AEUpdate) -> dict[str, Any]:
        changes = body.model_dump(exclude_none=True)
        return registry.update(ae_title, **changes).as_dict()

    @router.delete("/aes/{ae_title}", status_code=204, summary="Remove a registered remote AE")
    def remove_ae(ae_title: str) -> Response:
        registry.remove(ae_title)
        return Response(status_code=204)

    @router.get("/status", summary="DIMSE activity: recent associations, rejections, queue depth")
    def status(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> JSONResponse:
        accepted, rejected = associations.counters()
        body = {
            "ae_title": settings.ae_title,
            "ae_aliases": settings.ae_aliases,
            "dicom_port": settings.dicom_port,
            "tls_port": settings.tls_port or None,
            "association_policy": settings.association_policy,
            "associations": {
                "accepted": accepted,
                "rejected": sum(rejected.values()),
                "rejected_by_reason": rejected,
                "recent": [summary.as_dict() for summary in associations.recent(limit)],
            },
            "queue": {"index": queue_depth(services.queue)},
        }
        return JSONResponse(body)

    return router
