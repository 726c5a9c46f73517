"""Q/R handlers on their own: refusals before any database work, and SOP Class Extended Negotiation."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pydicom import Dataset
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from gateway.dimse import status
from gateway.dimse.handlers import AssociationTracker
from gateway.dimse.qr import handle_find, handle_sop_extended

FIND = str(StudyRootQueryRetrieveInformationModelFind)
MOVE = str(StudyRootQueryRetrieveInformationModelMove)


class Policy:
    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed

    def permits(self, entry: object, operation: str) -> bool:
        return self.allowed


class Assoc(SimpleNamespace):
    __hash__ = object.__hash__  # the tracker keys its sessions by association


class Event:
    """Just enough of a pynetdicom C-FIND event."""

    def __init__(self, identifier: Dataset | Exception) -> None:
        self._identifier = identifier
        requestor = SimpleNamespace(ae_title="FINDSCU", address="127.0.0.1", port=40000, primitive=None)
        self.assoc = Assoc(requestor=requestor, acceptor=SimpleNamespace(sop_class_extended={}))
        self.request = SimpleNamespace(AffectedSOPClassUID=FIND)
        self.is_cancelled = False

    @property
    def identifier(self) -> Dataset:
        if isinstance(self._identifier, Exception):
            raise self._identifier
        return self._identifier


def answers(event: Event, allowed: bool = True) -> list[tuple[Any, Any]]:
    tracker = AssociationTracker(Policy(allowed), None)  # type: ignore[arg-type]
    return list(handle_find(event, None, tracker))  # type: ignore[arg-type]


def test_caller_without_find_permission_is_refused() -> None:
    [(response, identifier)] = answers(Event(Dataset()), allowed=False)
    assert response.Status == status.NOT_AUTHORIZED and identifier is None


def test_undecodable_identifier_is_unable_to_process() -> None:
    [(response, _)] = answers(Event(ValueError("truncated element")))
    assert response.Status == status.UNABLE_TO_PROCESS
    assert response.ErrorComment == "identifier cannot be decoded"


def test_bad_level_is_refused_with_offending_element() -> None:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "FRAME"
    [(response, _)] = answers(Event(identifier))
    assert response.Status == status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS
    assert response.OffendingElement == 0x00080052


def test_extended_negotiation_accepts_relational_and_fuzzy_only() -> None:
    event = SimpleNamespace(app_info={FIND: b"\x01\x01\x01\x01", MOVE: b"\x01", "1.2.3": b"\x01"})
    assert handle_sop_extended(event) == {FIND: b"\x01\x00\x01\x00", MOVE: b"\x01"}
