"""The gateway's Application Entity: supported presentation contexts and association parameters."""

from __future__ import annotations

from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from gateway.config import Settings

# Every transfer syntax pydicom knows: native, deflated and all encapsulated ones, stored as received.
STORAGE_TRANSFER_SYNTAXES: list[str] = [str(uid) for uid in AllTransferSyntaxes]


def make_ae(settings: Settings) -> AE:
    """Return an AE accepting C-ECHO and C-STORE of every storage SOP class in every transfer syntax."""
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_pdu_size = settings.max_pdu
    ae.maximum_associations = settings.max_associations
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    ae.acse_timeout = settings.network_timeout
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax is not None:
            ae.add_supported_context(context.abstract_syntax, STORAGE_TRANSFER_SYNTAXES)
    return ae
