"""DIMSE event handlers: thin edges that parse the event, call a service, and map the result to a status."""

from __future__ import annotations

import socket
from typing import Any

import structlog
from pydicom.dataset import Dataset
from pynetdicom import build_context

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


def handle_requested(event: Any, called_ae_titles: list[str]) -> None:
    """Before negotiation: check the called AE title, then prefer the peer's transfer-syntax order.

    The called AE title must be ours or one of our aliases, else A-ASSOCIATE-RJ (PS3.8 7.1.1.9:
    rejected-permanent, service-user, "called AE title not recognized").

    Within each proposed context we accept the transfer syntax the peer listed first.

    pynetdicom picks a context's transfer syntax in the acceptor's order. A gateway that stores what
    it receives should take the requestor's order instead: an SCU lists its native encoding first,
    and any other choice makes it convert (big endian to little, deflated to plain, compressed to
    native) before sending. Reordering only the abstract syntaxes the peer proposed keeps this cheap.
    """
    called = str(event.assoc.requestor.primitive.called_ae_title).strip()
    if called not in called_ae_titles:
        log.warning(
            "dimse.association.rejected", reason="called AE title not recognized", called_ae=called, **_peer(event)
        )
        # As pynetdicom's own rejections do: send A-ASSOCIATE-RJ, then stop the association, which
        # lets the DUL flush the PDU before the socket closes.
        event.assoc.acse.send_reject(0x01, 0x01, 0x07)
        event.assoc.kill()
        return
    acceptor = event.assoc.acceptor
    requested: dict[str, list[str]] = {}
    for context in event.assoc.requestor.primitive.presentation_context_definition_list:
        proposed = requested.setdefault(str(context.abstract_syntax), [])
        proposed.extend(str(ts) for ts in context.transfer_syntax if str(ts) not in proposed)
    contexts = []
    for context in acceptor.supported_contexts:
        order = requested.get(str(context.abstract_syntax))
        if order:
            ours = [str(ts) for ts in context.transfer_syntax]
            preferred = [ts for ts in order if ts in ours] + [ts for ts in ours if ts not in order]
            reordered = build_context(context.abstract_syntax, preferred)
            reordered.scu_role, reordered.scp_role = context.scu_role, context.scp_role
            context = reordered
        contexts.append(context)
    acceptor.supported_contexts = contexts


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
