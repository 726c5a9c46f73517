"""The gateway's Application Entity: supported presentation contexts, association parameters and AE-title policy."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from gateway.admin.ae_titles import AERegistry, RemoteAETitle
from gateway.config import Operation, Settings

# Every transfer syntax pydicom knows: native, deflated and all encapsulated ones, stored as received.
STORAGE_TRANSFER_SYNTAXES: list[str] = [str(uid) for uid in AllTransferSyntaxes]

FIND_SOP_CLASSES = (PatientRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelFind)
MOVE_SOP_CLASSES = (PatientRootQueryRetrieveInformationModelMove, StudyRootQueryRetrieveInformationModelMove)
GET_SOP_CLASSES = (PatientRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelGet)
PATIENT_ROOT_SOP_CLASSES = frozenset(
    str(uid)
    for uid in (
        PatientRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelMove,
        PatientRootQueryRetrieveInformationModelGet,
    )
)

# PS3.8 9.3.4 (A-ASSOCIATE-RJ): result 1 rejected-permanent, source 1 service-user, and its reasons.
REJECTED_PERMANENT = 0x01
REJECTED_TRANSIENT = 0x02
SOURCE_SERVICE_USER = 0x01
REASON_NO_REASON_GIVEN = 0x01
REASON_CALLING_AE_NOT_RECOGNIZED = 0x03
REASON_CALLED_AE_NOT_RECOGNIZED = 0x07


def make_ae(settings: Settings) -> AE:
    """Return an AE for C-ECHO, C-STORE of every storage SOP class in every transfer syntax, and Q/R.

    Storage contexts accept either role (PS3.7 D.3.3.4 SCP/SCU Role Selection): a C-GET requester
    proposes them with itself as SCP, and the C-STORE sub-operations then run on its association.
    """
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_pdu_size = settings.max_pdu
    ae.maximum_associations = settings.max_associations
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    ae.acse_timeout = settings.network_timeout
    ae.add_supported_context(Verification)
    for sop_class in (*FIND_SOP_CLASSES, *MOVE_SOP_CLASSES, *GET_SOP_CLASSES):
        ae.add_supported_context(sop_class)
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax is not None:
            ae.add_supported_context(context.abstract_syntax, STORAGE_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
    return ae


@dataclass(frozen=True)
class Rejection:
    """Why an association is refused, and the A-ASSOCIATE-RJ reason code sent (PS3.8 9.3.4)."""

    reason: str
    diagnostic: int
    result: int = REJECTED_PERMANENT


def _addresses(host: str) -> frozenset[str]:
    try:
        return frozenset(str(info[4][0]) for info in socket.getaddrinfo(host, None))
    except OSError:
        return frozenset()


class AssociationPolicy:
    """Who may associate, and what a calling AE may do once associated.

    `open`: any calling AE is accepted; a registered one is held to its permissions. `registered`:
    only enabled registered AEs are accepted. In both, a disabled entry is refused, and with
    `association_check_host` a registered AE must call from an address its host resolves to.
    """

    def __init__(self, settings: Settings, registry: AERegistry) -> None:
        self.called_ae_titles = frozenset(settings.all_ae_titles)
        self.registered_only = settings.association_policy == "registered"
        self.check_host = settings.association_check_host
        self.registry = registry

    def admit(self, calling: str, called: str, address: str) -> tuple[RemoteAETitle | None, Rejection | None]:
        """Look the calling AE up (once per association) and decide; returns (entry, rejection)."""
        if called not in self.called_ae_titles:
            return None, Rejection("called AE title not recognized", REASON_CALLED_AE_NOT_RECOGNIZED)
        entry = self.registry.find(calling)
        if entry is None:
            if self.registered_only:
                return None, Rejection("calling AE title not recognized", REASON_CALLING_AE_NOT_RECOGNIZED)
            return None, None
        if not entry.enabled:
            return entry, Rejection("calling AE title is disabled", REASON_CALLING_AE_NOT_RECOGNIZED)
        if self.check_host and address not in _addresses(entry.host) and address != entry.host:
            return entry, Rejection(
                f"calling AE title not recognized from this address (registered host {entry.host})",
                REASON_CALLING_AE_NOT_RECOGNIZED,
            )
        return entry, None

    def permits(self, entry: RemoteAETitle | None, operation: Operation) -> bool:
        """True when a peer with this registry entry (None: unregistered, open policy) may do `operation`."""
        if entry is None:
            return not self.registered_only
        return entry.allows(operation)
