"""Outbound DIMSE (SCU): the C-STORE sub-operations of C-MOVE and C-GET, and C-ECHO to a registered AE.

Transfer syntax on retrieve (PS3.4 C.4.2.3 / C.4.3.3): an instance goes out as stored when the peer
accepted that transfer syntax; otherwise it is transcoded to explicit (or implicit) VR little endian
when its pixel data can be decoded; otherwise the sub-operation fails and its SOP Instance UID is
reported in the Failed SOP Instance UID List.
"""

from __future__ import annotations

import io
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from gateway.admin.ae_titles import RemoteAETitle
from gateway.dicom.transcode import to_explicit_little_endian
from gateway.errors import GatewayError
from gateway.index.retrieve import StoredInstance
from gateway.storage.base import ObjectStore

log = structlog.get_logger(__name__)

NATIVE_LITTLE_ENDIAN = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))
MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are odd numbers 1-255


def proposed_contexts(instances: Iterable[StoredInstance]) -> list[PresentationContext]:
    """The contexts to propose to a C-MOVE destination: per SOP class, one offering native little endian
    (for transcoded instances), and one per stored transfer syntax alone, so each can go as stored."""
    stored: dict[str, list[str]] = {}
    for item in instances:
        syntaxes = stored.setdefault(item.sop_class_uid, [])
        if item.transfer_syntax_uid not in syntaxes:
            syntaxes.append(item.transfer_syntax_uid)
    contexts = [build_context(sop_class, list(NATIVE_LITTLE_ENDIAN)) for sop_class in stored]
    for sop_class, syntaxes in stored.items():
        contexts.extend(build_context(sop_class, [ts]) for ts in syntaxes)
    if len(contexts) > MAX_CONTEXTS:
        # Native contexts come first, so every SOP class can still be sent (transcoded if need be).
        log.warning("dimse.retrieve.too_many_contexts", proposed=len(contexts), kept=MAX_CONTEXTS)
    return contexts[:MAX_CONTEXTS]


def _unsendable(item: StoredInstance) -> Dataset:
    # Without file meta there is no transfer syntax to send it in: pynetdicom counts the sub-operation
    # as failed and lists its SOP Instance UID (PS3.4 C.4.2.1.4.2), without reading the object.
    marker = Dataset()
    marker.SOPClassUID = item.sop_class_uid
    marker.SOPInstanceUID = item.sop_instance_uid
    return marker


def _read(data: bytes) -> Dataset:
    # Elements stay raw until touched, so re-encoding in the same syntax gives back the stored bytes.
    return dcmread(io.BytesIO(data))


def outgoing_dataset(store: ObjectStore, item: StoredInstance, accepted: Iterable[PresentationContext]) -> Dataset:
    """The dataset to send for one sub-operation over a peer that accepted `accepted` (we being SCU).

    Never raises: a missing or undecodable object gives a dataset pynetdicom reports as a failed sub-operation.
    """
    syntaxes = {
        str(cx.transfer_syntax[0])
        for cx in accepted
        if str(cx.abstract_syntax) == item.sop_class_uid and cx.as_scu and cx.transfer_syntax
    }
    try:
        if item.transfer_syntax_uid in syntaxes:
            return _read(store.read(item.object_key))
        if syntaxes & set(NATIVE_LITTLE_ENDIAN):
            # pynetdicom turns explicit into implicit VR little endian by itself when only that was accepted.
            return _read(to_explicit_little_endian(store.read(item.object_key)))
        reason = f"peer accepted none of {UID(item.transfer_syntax_uid).name} or native little endian"
    except GatewayError as exc:
        reason = str(exc)
    except Exception as exc:  # a damaged object must fail its sub-operation, not the whole retrieve
        reason = f"{type(exc).__name__}: {exc}"
    log.warning(
        "dimse.retrieve.suboperation_failed",
        sop_instance_uid=item.sop_instance_uid,
        transfer_syntax=item.transfer_syntax_uid,
        reason=reason[:200],
    )
    return _unsendable(item)


class DestinationAssociation:
    """Keeps the association pynetdicom opens to a C-MOVE destination, to see which contexts it accepted."""

    def __init__(self) -> None:
        self.assoc: Any = None

    def _accepted(self, event: Any) -> None:
        self.assoc = event.assoc

    def accepted_contexts(self) -> list[PresentationContext]:
        """The contexts the destination accepted (empty before it answered)."""
        return list(self.assoc.accepted_contexts) if self.assoc is not None else []

    def options(
        self, entry: RemoteAETitle, instances: Iterable[StoredInstance], tls: Callable[[], ssl.SSLContext] | None
    ) -> dict[str, Any]:
        """Keyword arguments for pynetdicom's association to `entry` (the third item of a C-MOVE destination)."""
        # With nothing to send (a refusal that pynetdicom can only answer after associating), Verification
        # is proposed, since an association needs at least one context.
        options: dict[str, Any] = {
            "contexts": proposed_contexts(instances) or [build_context(Verification)],
            "evt_handlers": [(evt.EVT_ACCEPTED, self._accepted)],
        }
        if entry.tls:
            if tls is None:
                raise GatewayError(f"AE {entry.ae_title} needs TLS, which is not configured")
            options["tls_args"] = (tls(), entry.host)
        return options


@dataclass(frozen=True)
class EchoResult:
    """The outcome of a C-ECHO: status (None when no association), round-trip seconds, and what happened."""

    status: int | None
    seconds: float
    detail: str

    @property
    def ok(self) -> bool:
        """True on status Success."""
        return self.status == 0x0000


def echo(
    our_ae_title: str, entry: RemoteAETitle, timeout: float, tls: Callable[[], ssl.SSLContext] | None = None
) -> EchoResult:
    """C-ECHO to a registered AE (PS3.4 A.4), over TLS when its entry says so; never raises for network errors."""
    ae = AE(ae_title=our_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(Verification)
    tls_args = None
    if entry.tls:
        if tls is None:
            return EchoResult(None, 0.0, "the AE needs TLS, which is not configured here")
        tls_args = (tls(), entry.host)
    started = time.perf_counter()
    try:
        assoc = ae.associate(entry.host, entry.port, ae_title=entry.ae_title, tls_args=tls_args)
    except (OSError, ssl.SSLError) as exc:
        return EchoResult(None, time.perf_counter() - started, f"connection failed: {exc}")
    if not assoc.is_established:
        detail = "association rejected" if assoc.is_rejected else "association failed (no answer or aborted)"
        return EchoResult(None, time.perf_counter() - started, detail)
    try:
        response = assoc.send_c_echo()
        status = int(response.Status) if "Status" in response else None
    finally:
        assoc.release()
    seconds = time.perf_counter() - started
    return EchoResult(status, seconds, "no response" if status is None else "")
