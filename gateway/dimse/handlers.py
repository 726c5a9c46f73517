"""DIMSE event handlers: thin edges that parse the event, call a service, and map the result to a status."""

from __future__ import annotations

import socket
from typing import Any

import structlog
from pydicom.dataset import Dataset

from gateway.dimse.status import SUCCESS, store_status
from gateway.errors import GatewayError
from gateway.ingest import IngestService

log = structlog.get_logger(__name__)


def _peer(event: Any) -> dict[str, Any]:
    requestor = event.assoc.requestor
    return {"calling_ae": requestor.ae_title, "peer": f"{requestor.address}:{requestor.port}"}


def handle_connection_open(event: Any) -> None:
    """Disable Nagle's algorithm, so each C-STORE response leaves at once instead of waiting for an ACK."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def handle_echo(event: Any) -> int:
    """C-ECHO: we are here."""
    log.debug("dimse.echo", **_peer(event))
    return SUCCESS


def _failure(status: int, comment: str) -> Dataset:
    response = Dataset()
    response.Status = status
    # PS3.7 C.4: Error Comment is LO, at most 64 characters.
    response.ErrorComment = comment.replace("\\", "/")[:64]
    return response


def handle_store(event: Any, ingest: IngestService) -> int | Dataset:
    """C-STORE: hand the received bytes, untouched, to the ingest service; success only once queued."""
    request = event.request
    peer = _peer(event)
    try:
        result = ingest.ingest_dataset(
            event.encoded_dataset(include_meta=False),
            transfer_syntax_uid=str(event.context.transfer_syntax),
            sop_class_uid=str(request.AffectedSOPClassUID or ""),
            sop_instance_uid=str(request.AffectedSOPInstanceUID or ""),
            source_ae=peer["calling_ae"],
        )
    except GatewayError as exc:
        status = store_status(exc)
        log.warning(
            "dimse.store.failed",
            status=f"0x{status:04X}",
            reason=str(exc),
            sop_instance_uid=str(request.AffectedSOPInstanceUID or ""),
            **peer,
        )
        return _failure(status, str(exc))
    except Exception as exc:  # never leak internals to the peer; the traceback goes to the log
        status = store_status(exc)
        log.exception("dimse.store.error", sop_instance_uid=str(request.AffectedSOPInstanceUID or ""), **peer)
        return _failure(status, "internal error")
    log.info("dimse.store", key=result.key, written=result.written, **peer)
    return SUCCESS
