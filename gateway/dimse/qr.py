"""Query/Retrieve SCP (PS3.4 Annex C): C-FIND, C-MOVE and C-GET over the index.

C-FIND translates its identifier into the neutral `Query` of gateway/index/queries.py, so DIMSE and
QIDO-RS share one matching implementation. The Patient Root and Study Root information models are
served at PATIENT (Patient Root only), STUDY, SERIES and IMAGE level.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
from pydicom.dataset import Dataset
from sqlalchemy.orm import Session, sessionmaker

from gateway.admin.ae_titles import AERegistry
from gateway.dicom.attributes import QueryLevel
from gateway.dimse.ae import FIND_SOP_CLASSES, GET_SOP_CLASSES, MOVE_SOP_CLASSES, PATIENT_ROOT_SOP_CLASSES
from gateway.dimse.handlers import AssociationTracker, failure
from gateway.dimse.identifiers import FindRequest, RetrieveRequest, find_responses, parse_find, parse_retrieve
from gateway.dimse.scu import DestinationAssociation, outgoing_dataset
from gateway.dimse.status import (
    CANCELLED,
    MOVE_DESTINATION_UNKNOWN,
    NOT_AUTHORIZED,
    PENDING,
    PENDING_OPTIONAL_KEYS_UNSUPPORTED,
    UNABLE_TO_PROCESS,
    find_status,
    retrieve_status,
)
from gateway.errors import GatewayError
from gateway.index.queries import Query, search
from gateway.index.retrieve import StoredInstance
from gateway.storage.base import ObjectStore

log = structlog.get_logger(__name__)

_FIND = frozenset(str(uid) for uid in FIND_SOP_CLASSES)
_RETRIEVE = frozenset(str(uid) for uid in (*MOVE_SOP_CLASSES, *GET_SOP_CLASSES))


@dataclass
class QueryRetrieve:
    """What the Q/R handlers need: the index, the object store, the registry, and our identity."""

    sessions: sessionmaker[Session]
    store: ObjectStore
    registry: AERegistry
    ae_title: str
    client_tls: Callable[[], ssl.SSLContext] | None = None

    def find(self, request: FindRequest) -> Iterator[Dataset]:
        """The C-FIND responses for `request`, read from the index page by page."""
        return find_responses(self.sessions, request, self.ae_title)

    def instances(self, request: RetrieveRequest) -> list[StoredInstance]:
        """The stored instances a C-MOVE / C-GET identifier selects, in a stable order (raises IndexUnavailable)."""
        found = search(self.sessions, Query(QueryLevel.IMAGE, request.matches)).rows
        return [
            StoredInstance(
                study_instance_uid=row.study.study_instance_uid,
                series_instance_uid=row.series.series_instance_uid,
                sop_instance_uid=row.instance.sop_instance_uid,
                sop_class_uid=row.instance.sop_class_uid,
                transfer_syntax_uid=row.instance.transfer_syntax_uid,
                object_key=row.instance.object_key,
                size=row.instance.size,
                number_of_frames=row.instance.number_of_frames,
                frame_offsets=None,  # not needed to send whole objects
            )
            for row in found
            if row.series is not None and row.instance is not None
        ]


def _negotiated(event: Any, sop_class: str) -> bytes:
    # What we accepted in SOP Class Extended Negotiation for this SOP class (PS3.4 C.5.1.1, C.5.2.1, C.5.3.1).
    accepted: dict[str, bytes] = {str(k): v for k, v in (event.assoc.acceptor.sop_class_extended or {}).items()}
    return accepted.get(sop_class, b"")


def handle_sop_extended(event: Any) -> dict[str, bytes]:
    """Accept relational queries and retrievals, and fuzzy person-name matching, when asked (PS3.4 C.5).

    C-FIND byte 1 relational-queries and byte 3 fuzzy semantic matching of person names are supported;
    byte 2 (combined date-time matching) and byte 4 (timezone adjustment) are answered 0. C-MOVE / C-GET
    byte 1 relational-retrieval is supported (retrieval needs only the unique key of its level).
    """
    replies: dict[str, bytes] = {}
    for sop_class, info in (event.app_info or {}).items():
        uid, asked = str(sop_class), bytes(info)
        if uid in _FIND and asked:
            reply = bytearray(len(asked))
            reply[0] = asked[0] & 1
            if len(asked) > 2:
                reply[2] = asked[2] & 1
            replies[uid] = bytes(reply)
        elif uid in _RETRIEVE and asked:
            replies[uid] = bytes([asked[0] & 1])
    return replies


def _options(event: Any) -> tuple[bool, bool, bool]:
    sop_class = str(event.request.AffectedSOPClassUID)
    negotiated = _negotiated(event, sop_class)
    relational = len(negotiated) > 0 and negotiated[0] == 1
    fuzzy = len(negotiated) > 2 and negotiated[2] == 1
    return sop_class in PATIENT_ROOT_SOP_CLASSES, relational, fuzzy


def handle_find(event: Any, qr: QueryRetrieve, tracker: AssociationTracker) -> Iterator[tuple[Any, Dataset | None]]:
    """C-FIND SCP (PS3.4 C.4.1.2): one pending response per match, C-CANCEL checked before each."""
    peer = {"calling_ae": event.assoc.requestor.ae_title}
    if not tracker.permits(event, "find"):
        yield failure(NOT_AUTHORIZED, "calling AE title is not permitted to query"), None
        return
    try:
        identifier = event.identifier
        patient_root, relational, fuzzy = _options(event)
        request = parse_find(identifier, patient_root, relational, fuzzy)
    except GatewayError as exc:
        status = find_status(exc)
        log.warning("dimse.find.refused", status=f"0x{status:04X}", reason=str(exc), **peer)
        yield failure(status, str(exc), getattr(exc, "tag", None)), None
        return
    except Exception as exc:  # pydicom raises many types for an identifier it cannot decode
        log.warning("dimse.find.refused", status=f"0x{UNABLE_TO_PROCESS:04X}", reason=repr(exc)[:200], **peer)
        yield failure(UNABLE_TO_PROCESS, "identifier cannot be decoded"), None
        return
    pending = PENDING_OPTIONAL_KEYS_UNSUPPORTED if request.unmatched else PENDING
    matches = 0
    try:
        for response in qr.find(request):
            if event.is_cancelled:
                log.info("dimse.find.cancelled", matches=matches, **peer)
                yield CANCELLED, None
                return
            matches += 1
            yield pending, response
    except GatewayError as exc:
        status = find_status(exc)
        log.warning("dimse.find.failed", status=f"0x{status:04X}", reason=str(exc), **peer)
        yield failure(status, str(exc)), None
        return
    except Exception:
        log.exception("dimse.find.error", **peer)
        yield failure(UNABLE_TO_PROCESS, "internal error"), None
        return
    if session := tracker.session(event):
        session.count("C-FIND")
    log.info("dimse.find", level=request.level, matches=matches, **peer)


def _retrieve_request(event: Any, qr: QueryRetrieve) -> tuple[list[StoredInstance], Dataset | None]:
    """The instances an identifier selects, or the failure status to answer instead."""
    peer = {"calling_ae": event.assoc.requestor.ae_title}
    try:
        patient_root, _relational, _fuzzy = _options(event)
        return qr.instances(parse_retrieve(event.identifier, patient_root)), None
    except GatewayError as exc:
        status = retrieve_status(exc)
        log.warning("dimse.retrieve.refused", status=f"0x{status:04X}", reason=str(exc), **peer)
        return [], failure(status, str(exc), getattr(exc, "tag", None))
    except Exception as exc:
        log.warning("dimse.retrieve.refused", reason=repr(exc)[:200], **peer)
        return [], failure(UNABLE_TO_PROCESS, "identifier cannot be decoded")


def _sub_operations(
    event: Any,
    qr: QueryRetrieve,
    tracker: AssociationTracker,
    service: str,
    instances: list[StoredInstance],
    accepted: Callable[[], list[Any]],
) -> Iterator[tuple[Any, Dataset | None]]:
    # Pending sub-operations, one per instance; pynetdicom sends each, counts the results and answers
    # the final status (0xB000 / 0xA702 with the Failed SOP Instance UID List when some fail).
    session = tracker.session(event)
    for sent, item in enumerate(instances):
        if event.is_cancelled:
            log.info(f"dimse.{service.lower()}.cancelled", sent=sent, remaining=len(instances) - sent)
            yield CANCELLED, None
            return
        dataset = outgoing_dataset(qr.store, item, accepted())
        if session is not None:
            session.count(service, 1, item.size)
        yield PENDING, dataset
    log.info(f"dimse.{service.lower()}", instances=len(instances), calling_ae=event.assoc.requestor.ae_title)


def handle_move(event: Any, qr: QueryRetrieve, tracker: AssociationTracker) -> Iterator[Any]:
    """C-MOVE SCP (PS3.4 C.4.2.2): sub-operations to a registered destination over a new association.

    pynetdicom's protocol: yield the destination (address, port, association options), then the number
    of sub-operations, then (status, dataset) pairs. An unknown destination yields (None, None): 0xA801.
    """
    destination = (event.move_destination or "").strip()
    peer = {"calling_ae": event.assoc.requestor.ae_title, "move_destination": destination}
    try:
        entry = qr.registry.find(destination) if destination else None
    except GatewayError as exc:
        # Before the destination is known pynetdicom can only answer 0xA801 or, for an exception, 0xC514.
        log.error("dimse.move.registry_unavailable", reason=str(exc), **peer)
        raise
    if entry is None or not entry.allows("destination"):
        reason = "not registered" if entry is None else "not permitted as a move destination"
        log.warning("dimse.move.refused", status=f"0x{MOVE_DESTINATION_UNKNOWN:04X}", reason=reason, **peer)
        yield None, None
        return
    instances, refusal = _retrieve_request(event, qr)
    holder = DestinationAssociation()
    try:
        options = holder.options(entry, instances, qr.client_tls)
    except GatewayError as exc:
        log.warning("dimse.move.refused", reason=str(exc), **peer)
        yield None, None
        return
    yield entry.host, entry.port, options
    if refusal is not None:
        # A refusal can only be sent once pynetdicom has opened the destination association: one
        # "sub-operation" whose final status is the refusal.
        yield 1
        yield refusal, None
        return
    yield len(instances)
    yield from _sub_operations(event, qr, tracker, "C-MOVE", instances, holder.accepted_contexts)


def handle_get(event: Any, qr: QueryRetrieve, tracker: AssociationTracker) -> Iterator[Any]:
    """C-GET SCP (PS3.4 C.4.3.2): C-STORE sub-operations on the requester's own association.

    They use the storage contexts the requester proposed with itself in the SCP role (PS3.7 D.3.3.4).
    """
    instances, refusal = _retrieve_request(event, qr)
    if refusal is not None:
        yield 1
        yield refusal, None
        return
    yield len(instances)
    yield from _sub_operations(event, qr, tracker, "C-GET", instances, lambda: list(event.assoc.accepted_contexts))
