"""DIMSE event handlers: thin edges that parse the event, call a service, and map the result to a status.

`AssociationTracker` holds what one association needs between events: the calling AE's registry entry
(looked up once, at A-ASSOCIATE-RQ), what the peer did, and the association-log row written at the end.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from pydicom.dataset import Dataset
from pynetdicom import build_context
from pynetdicom.presentation import PresentationContext

from gateway.admin.ae_titles import RemoteAETitle
from gateway.admin.associations import AssociationLog, AssociationSummary
from gateway.config import Operation
from gateway.dimse.ae import (
    GET_SOP_CLASSES,
    MOVE_SOP_CLASSES,
    REASON_NO_REASON_GIVEN,
    REJECTED_TRANSIENT,
    SOURCE_SERVICE_USER,
    AssociationPolicy,
    Rejection,
)
from gateway.dimse.status import NOT_AUTHORIZED, SUCCESS, store_status
from gateway.errors import GatewayError, IndexUnavailable
from gateway.ingest import IngestService

log = structlog.get_logger(__name__)

_RETRIEVE_OPERATIONS: dict[str, Operation] = {
    **{str(uid): "move" for uid in MOVE_SOP_CLASSES},
    **{str(uid): "get" for uid in GET_SOP_CLASSES},
}


def _peer(event: Any) -> dict[str, Any]:
    requestor = event.assoc.requestor
    # During A-ASSOCIATE-RQ the title is only in the request primitive.
    primitive = getattr(requestor, "primitive", None)
    calling = requestor.ae_title or (str(primitive.calling_ae_title).strip() if primitive is not None else "")
    return {"calling_ae": calling, "peer": f"{requestor.address}:{requestor.port}"}


def failure(status: int, comment: str, offending: int | None = None) -> Dataset:
    """A status dataset with Error Comment (PS3.7 C.4: LO, at most 64 characters) and Offending Element."""
    response = Dataset()
    response.Status = status
    response.ErrorComment = comment.replace("\\", "/")[:64]
    if offending is not None:
        response.OffendingElement = [offending]
    return response


@dataclass
class PeerSession:
    """One accepted association: who called, its registry entry, and what it did."""

    calling_ae: str
    called_ae: str
    address: str
    port: int
    tls: bool
    entry: RemoteAETitle | None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.monotonic)
    services: list[str] = field(default_factory=list)
    instances: int = 0
    bytes: int = 0
    result: str = "aborted"

    def count(self, service: str, instances: int = 0, size: int = 0) -> None:
        """Note that the peer used `service`, moving `instances` instances of `size` bytes in all."""
        if service not in self.services:
            self.services.append(service)
        self.instances += instances
        self.bytes += size


class AssociationTracker:
    """Applies the association policy and keeps a PeerSession per association; one per listening port."""

    def __init__(self, policy: AssociationPolicy, association_log: AssociationLog | None, tls: bool = False) -> None:
        self.policy = policy
        self.association_log = association_log
        self.tls = tls
        self._sessions: dict[Any, PeerSession] = {}
        self._lock = threading.Lock()

    def session(self, event: Any) -> PeerSession | None:
        """The session of the event's association (None only if it was never accepted)."""
        with self._lock:
            return self._sessions.get(event.assoc)

    def permits(self, event: Any, operation: Operation) -> bool:
        """True when the association's calling AE may perform `operation`; a refusal is logged."""
        return self.session_permits(self.session(event), operation, _peer(event))

    def session_permits(self, session: PeerSession | None, operation: Operation, peer: dict[str, Any]) -> bool:
        """True when the session's calling AE may perform `operation`; a refusal is logged."""
        allowed = self.policy.permits(session.entry if session else None, operation)
        if not allowed:
            log.warning("dimse.operation.refused", operation=operation, reason="not permitted", **peer)
        return allowed

    def _summary(self, session: PeerSession, result: str, reason: str = "") -> AssociationSummary:
        return AssociationSummary(
            started_at=session.started_at,
            duration_seconds=time.monotonic() - session.started,
            peer_address=session.address,
            peer_port=session.port,
            calling_ae=session.calling_ae,
            called_ae=session.called_ae,
            tls=session.tls,
            services=tuple(session.services),
            instances=session.instances,
            bytes=session.bytes,
            result=result,
            reason=reason,
        )

    def admit(self, session: PeerSession, peer: dict[str, Any]) -> Rejection | None:
        """Apply the association policy to a new session (setting its registry entry); None means accepted.

        A rejection is logged and recorded in the association log; the caller sends the A-ASSOCIATE-RJ.
        """
        try:
            entry, rejection = self.policy.admit(session.calling_ae, session.called_ae, session.address)
        except IndexUnavailable as exc:
            # The registry cannot be read: refuse for now (transient), rather than guess who may do what.
            log.error("dimse.association.registry_unavailable", reason=str(exc), **peer)
            entry, rejection = None, Rejection("AE registry unavailable", REASON_NO_REASON_GIVEN, REJECTED_TRANSIENT)
        session.entry = entry
        if rejection is not None:
            log.warning("dimse.association.rejected", reason=rejection.reason, called_ae=session.called_ae, **peer)
            if self.association_log is not None:
                self.association_log.record(self._summary(session, "rejected", rejection.reason))
        return rejection

    def closed(self, session: PeerSession, peer: dict[str, Any]) -> None:
        """Log the end of an accepted association and write its association-log row."""
        log.info(
            "dimse.association.closed",
            result=session.result,
            services=",".join(session.services),
            instances=session.instances,
            **peer,
        )
        if self.association_log is not None:
            self.association_log.record(self._summary(session, session.result))

    def on_requested(self, event: Any) -> None:
        """A-ASSOCIATE-RQ: apply the policy (PS3.8 7.1.1.9 reasons), then tailor our presentation contexts."""
        requestor = event.assoc.requestor
        session = PeerSession(
            calling_ae=str(requestor.primitive.calling_ae_title).strip(),
            called_ae=str(requestor.primitive.called_ae_title).strip(),
            address=str(requestor.address),
            port=int(requestor.port),
            tls=self.tls,
            entry=None,
        )
        rejection = self.admit(session, _peer(event))
        if rejection is not None:
            # As pynetdicom's own rejections do: send A-ASSOCIATE-RJ, then stop the association, which
            # lets the DUL flush the PDU before the socket closes.
            event.assoc.acse.send_reject(rejection.result, SOURCE_SERVICE_USER, rejection.diagnostic)
            event.assoc.kill()
            return
        with self._lock:
            self._sessions[event.assoc] = session
        entry = session.entry
        acceptor = event.assoc.acceptor
        acceptor.supported_contexts = preferred_contexts(
            acceptor.supported_contexts,
            event.assoc.requestor.primitive.presentation_context_definition_list,
            lambda operation: self.policy.permits(entry, operation),
            _peer(event),
        )

    def on_released(self, event: Any) -> None:
        """A-RELEASE completed."""
        if session := self.session(event):
            session.result = "released"

    def on_aborted(self, event: Any) -> None:
        """A-ABORT sent or received."""
        if session := self.session(event):
            session.result = "aborted"

    def on_closed(self, event: Any) -> None:
        """Connection closed: write the association's log row."""
        with self._lock:
            session = self._sessions.pop(event.assoc, None)
        if session is not None:
            self.closed(session, _peer(event))


def preferred_contexts(
    supported: list[PresentationContext],
    proposed: list[PresentationContext],
    permits: Callable[[Operation], bool],
    peer: dict[str, Any],
) -> list[PresentationContext]:
    """Our contexts for one association: C-MOVE / C-GET dropped where refused, the peer's syntax order first.

    A C-MOVE or C-GET refused by the registry is refused at negotiation (the context is not accepted,
    PS3.8 9.3.3.2), since a C-MOVE cannot be refused by status before its destination is contacted.

    Within each proposed context we accept the transfer syntax the peer listed first. pynetdicom picks
    a context's transfer syntax in the acceptor's order; a gateway that stores what it receives should
    take the requestor's order instead: an SCU lists its native encoding first, and any other choice
    makes it convert (big endian to little, deflated to plain, compressed to native) before sending.
    """
    requested: dict[str, list[str]] = {}
    for context in proposed:
        order = requested.setdefault(str(context.abstract_syntax), [])
        order.extend(str(ts) for ts in context.transfer_syntax if str(ts) not in order)
    contexts = []
    for context in supported:
        abstract = str(context.abstract_syntax)
        if abstract not in requested:
            continue  # not proposed: irrelevant to this association's negotiation
        operation = _RETRIEVE_OPERATIONS.get(abstract)
        if operation is not None and not permits(operation):
            log.warning("dimse.context.refused", operation=operation, reason="not permitted", **peer)
            continue
        order = requested[abstract]
        ours = [str(ts) for ts in context.transfer_syntax]
        preferred = [ts for ts in order if ts in ours] + [ts for ts in ours if ts not in order]
        reordered = build_context(abstract, preferred)
        reordered.scu_role, reordered.scp_role = context.scu_role, context.scp_role
        contexts.append(reordered)
    return contexts


def handle_connection_open(event: Any) -> None:
    """Disable Nagle's algorithm, so each C-STORE response leaves at once instead of waiting for an ACK."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def handle_echo(event: Any, tracker: AssociationTracker) -> int:
    """C-ECHO: we are here."""
    if session := tracker.session(event):
        session.count("C-ECHO")
    log.debug("dimse.echo", **_peer(event))
    return SUCCESS


def store_instance(
    ingest: IngestService,
    tracker: AssociationTracker,
    session: PeerSession | None,
    data: bytes | Sequence[memoryview],
    transfer_syntax_uid: str,
    sop_class_uid: str,
    sop_instance_uid: str,
    peer: dict[str, Any],
) -> tuple[int, str]:
    """C-STORE of one received dataset, shared by pynetdicom's handler and the fast receiver.

    Returns (status, error comment): success only once the instance is durable and queued.
    """
    if not tracker.session_permits(session, "store", peer):
        return NOT_AUTHORIZED, "calling AE title is not permitted to store"
    try:
        result = ingest.ingest_dataset(
            data,
            transfer_syntax_uid=transfer_syntax_uid,
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            source_ae=peer["calling_ae"],
        )
    except GatewayError as exc:
        status = store_status(exc)
        log.warning(
            "dimse.store.failed", status=f"0x{status:04X}", reason=str(exc), sop_instance_uid=sop_instance_uid, **peer
        )
        return status, str(exc)
    except Exception as exc:  # never leak internals to the peer; the traceback goes to the log
        log.exception("dimse.store.error", sop_instance_uid=sop_instance_uid, **peer)
        return store_status(exc), "internal error"
    if session is not None:
        session.count("C-STORE", 1, len(data) if isinstance(data, bytes) else sum(map(len, data)))
    # One line per instance only at DEBUG: a push of thousands of images is summarised at INFO by
    # dimse.association.closed (and the association log); failures are logged above at WARNING.
    log.debug("dimse.store", key=result.key, written=result.written, **peer)
    return SUCCESS, ""


def handle_store(event: Any, ingest: IngestService, tracker: AssociationTracker) -> int | Dataset:
    """C-STORE: hand the received bytes, untouched, to the ingest service; success only once queued."""
    request = event.request
    status, comment = store_instance(
        ingest,
        tracker,
        tracker.session(event),
        event.encoded_dataset(include_meta=False),
        str(event.context.transfer_syntax),
        str(request.AffectedSOPClassUID or ""),
        str(request.AffectedSOPInstanceUID or ""),
        _peer(event),
    )
    return SUCCESS if status == SUCCESS else failure(status, comment)
