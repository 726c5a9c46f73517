"""The hand-written storage negotiation answers exactly as pynetdicom would, and hands anything unusual back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
)
from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from gateway.config import Settings
from gateway.dimse import acse
from gateway.dimse.ae import make_ae
from gateway.dimse.fast_store import storage_transfer_syntaxes
from gateway.dimse.handlers import preferred_contexts
from tests.pdus import Proposal, associate_rq

OUR_MAX_PDU = 131072


@pytest.fixture(scope="module")
def ae() -> AE:
    return make_ae(Settings(_env_file=None))  # type: ignore[call-arg]


def request_bytes(proposals: Sequence[Proposal], **options: Any) -> bytes:
    """A request as DCMTK's storescu words it (maximum length 16384, a version name) unless told otherwise."""
    return associate_rq(
        *proposals, **{"calling": "MODALITY", "maximum_length": 16384, "version_name": "OFFIS_DCMTK_367", **options}
    )


def pynetdicom_accept(ae: AE, raw: bytes) -> bytes:
    """The reference: pynetdicom decodes, negotiates (our preferred order) and encodes the A-ASSOCIATE-AC."""
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(raw)
    request = pdu.to_primitive()
    proposed = request.presentation_context_definition_list
    ours = preferred_contexts(ae.supported_contexts, proposed, lambda _operation: True, {})
    results: list[PresentationContext]
    results, _roles = negotiate_as_acceptor(proposed, ours)
    primitive = A_ASSOCIATE()
    primitive.application_context_name = acse.APPLICATION_CONTEXT_NAME
    primitive.calling_ae_title = request.calling_ae_title
    primitive.called_ae_title = request.called_ae_title
    primitive.result = 0x00
    primitive.result_source = 0x01
    primitive.presentation_context_definition_results_list = results
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = OUR_MAX_PDU
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = ae.implementation_class_uid
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = ae.implementation_version_name
    primitive.user_information = [maximum, implementation, version]
    accept = A_ASSOCIATE_AC()
    accept.from_primitive(primitive)
    return bytes(accept.encode())


def our_accept(ae: AE, raw: bytes) -> tuple[acse.AssociateRequest, list[acse.ContextResult], bytes]:
    request = acse.parse_associate_request(raw)
    assert request is not None
    results = acse.negotiate(request, storage_transfer_syntaxes(ae))
    accept = acse.associate_accept(
        request, results, OUR_MAX_PDU, ae.implementation_class_uid, ae.implementation_version_name or ""
    )
    return request, results, accept


NATIVE = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
STORESCU_LIKE = [
    (2 * n + 1, str(context.abstract_syntax), NATIVE) for n, context in enumerate(AllStoragePresentationContexts[:127])
] + [(255, str(Verification), [ImplicitVRLittleEndian])]


@pytest.mark.parametrize(
    "proposals",
    [
        pytest.param(STORESCU_LIKE, id="storescu-like, 128 contexts"),
        pytest.param(
            # One SOP class proposed twice in different orders: the first listing of the class decides.
            [(1, CTImageStorage, [JPEG2000Lossless, ExplicitVRLittleEndian]), (3, CTImageStorage, NATIVE)],
            id="one SOP class twice",
        ),
        pytest.param(
            [(5, MRImageStorage, ["1.2.3.4.5.6"]), (3, CTImageStorage, [DeflatedExplicitVRLittleEndian])],
            id="unknown transfer syntax, IDs out of order",
        ),
    ],
)
def test_accept_is_byte_for_byte_what_pynetdicom_sends(ae: AE, proposals: list[Proposal]) -> None:
    raw = request_bytes(proposals)
    _request, results, accept = our_accept(ae, raw)
    assert accept == pynetdicom_accept(ae, raw)
    assert [r.context_id for r in results] == sorted(p[0] for p in proposals)


def test_results_follow_the_peers_order_and_refuse_what_we_lack(ae: AE) -> None:
    raw = request_bytes(
        [
            (1, CTImageStorage, [JPEG2000Lossless, ExplicitVRLittleEndian]),
            (3, CTImageStorage, [ExplicitVRLittleEndian, JPEG2000Lossless]),
            (5, MRImageStorage, ["1.2.3.4.5.6"]),
        ],
        extra=(AsynchronousOperationsWindowNegotiation(),),
        calling="CT01",
    )
    request, results, accept = our_accept(ae, raw)
    assert (request.calling_ae_title, request.called_ae_title, request.maximum_length) == ("CT01", "DICOMGW", 16384)
    assert [(r.context_id, r.result, r.transfer_syntax) for r in results] == [
        (1, acse.ACCEPTANCE, JPEG2000Lossless),
        (3, acse.ACCEPTANCE, JPEG2000Lossless),  # the peer listed JPEG 2000 first for CT
        (5, acse.TRANSFER_SYNTAXES_NOT_SUPPORTED, "1.2.3.4.5.6"),
    ]
    decoded = A_ASSOCIATE_AC()
    decoded.decode(accept)
    primitive = decoded.to_primitive()
    assert primitive.maximum_length_received == OUR_MAX_PDU
    assert [(cx.context_id, cx.result) for cx in primitive.presentation_context_definition_results_list] == [
        (1, 0x00),
        (3, 0x00),
        (5, 0x04),
    ]
    supported = storage_transfer_syntaxes(ae)
    assert supported[CTImageStorage] >= {ExplicitVRLittleEndian, JPEG2000Lossless}


def test_an_unsupported_sop_class_is_refused_as_such() -> None:
    raw = request_bytes([(1, CTImageStorage, [ExplicitVRLittleEndian])])
    request = acse.parse_associate_request(raw)
    assert request is not None
    [result] = acse.negotiate(request, {MRImageStorage: frozenset({ExplicitVRLittleEndian})})
    assert (result.result, result.transfer_syntax) == (acse.ABSTRACT_SYNTAX_NOT_SUPPORTED, ExplicitVRLittleEndian)


def _role() -> SCP_SCU_RoleSelectionNegotiation:
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CTImageStorage
    role.scu_role, role.scp_role = True, True
    return role


def _extended() -> SOPClassExtendedNegotiation:
    item = SOPClassExtendedNegotiation()
    item.sop_class_uid = CTImageStorage
    item.service_class_application_information = b"\x01"
    return item


def _identity() -> UserIdentityNegotiation:
    item = UserIdentityNegotiation()
    item.user_identity_type = 1
    item.primary_field = b"radiographer"
    return item


CT = (1, CTImageStorage, [ExplicitVRLittleEndian])


def with_first_context_id(raw: bytes, context_id: int) -> bytes:
    """The request with its first presentation context's ID replaced (pynetdicom refuses to encode even IDs)."""
    position = 74 + 4 + int.from_bytes(raw[76:78], "big")  # past the application context item
    assert raw[position] == 0x20
    return raw[: position + 4] + bytes([context_id]) + raw[position + 5 :]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(request_bytes([CT], extra=(_role(),)), id="role selection"),
        pytest.param(request_bytes([CT], extra=(_extended(),)), id="extended negotiation"),
        pytest.param(request_bytes([CT], extra=(_identity(),)), id="user identity"),
        pytest.param(request_bytes([CT], application_context="1.2.3.4"), id="another application context"),
        pytest.param(request_bytes([CT, (1, MRImageStorage, NATIVE)]), id="duplicate context ID"),
        pytest.param(with_first_context_id(request_bytes([CT]), 2), id="even context ID"),
        pytest.param(request_bytes([CT])[:-3], id="truncated"),
        pytest.param(request_bytes([CT]) + b"\x60\x00\x00\x00", id="unknown item"),
        pytest.param(b"\x02" + request_bytes([CT])[1:], id="not an A-ASSOCIATE-RQ"),
        pytest.param(request_bytes([CT])[:6] + b"\x00\x02" + request_bytes([CT])[8:], id="protocol version 2"),
        pytest.param(request_bytes([CT]).replace(b"MODALITY", b"MOD\xc4LITY"), id="AE title not ASCII"),
    ],
)
def test_anything_unusual_is_left_to_pynetdicom(raw: bytes) -> None:
    assert acse.parse_associate_request(raw) is None


def test_a_plain_request_is_read() -> None:
    raw = request_bytes([CT, (3, Verification, [ImplicitVRLittleEndian])])
    assert acse.parse_associate_request(with_first_context_id(raw, 5)) is not None
    request = acse.parse_associate_request(raw)
    assert request is not None
    assert request.contexts == (
        acse.ProposedContext(1, CTImageStorage, (ExplicitVRLittleEndian,)),
        acse.ProposedContext(3, str(Verification), (ImplicitVRLittleEndian,)),
    )
