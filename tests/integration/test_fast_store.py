"""The fast C-STORE receiver on the wire: what it serves, how it frames, and how it answers protocol errors."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import (
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification  # type: ignore[attr-defined]

from gateway.dimse import status
from gateway.dimse.fast_store import FastStoreAcceptor, Negotiation, parse_command
from gateway.dimse.server import start_scp
from gateway.services import Services
from tests.factories import make_dataset, to_part10_bytes
from tests.fixtures.gateway import gateway_services, make_settings
from tests.part10 import dataset_bytes
from tests.pdus import associate_rq

pytestmark = pytest.mark.integration


@dataclass
class Running:
    services: Services
    port: int
    server: Any


@pytest.fixture
def scp(tmp_path: Path, broker_url: str, request: pytest.FixtureRequest) -> Iterator[Running]:
    overrides = getattr(request, "param", {})
    settings = make_settings(tmp_path / "data", broker_url=broker_url, max_pdu=16384, **overrides)
    with gateway_services(settings) as services:
        server = start_scp(services, host="127.0.0.1", port=0)
        try:
            yield Running(services, int(server.server_address[1]), server)
        finally:
            server.shutdown()


class RawPeer:
    """A DICOM peer speaking PDUs by hand over a plain socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def close(self) -> None:
        self.sock.close()

    def receive(self) -> tuple[int, bytes]:
        header = self._exactly(6)
        pdu_type, length = struct.unpack(">BxL", header)
        return pdu_type, self._exactly(length)

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed by the gateway")
            data += chunk
        return data

    def closed(self) -> bool:
        return self.sock.recv(1) == b""

    def associate(self, *contexts: tuple[int, str, list[str]]) -> bytes:
        self.sock.sendall(associate_rq(*contexts))
        pdu_type, body = self.receive()
        assert pdu_type == 0x02, f"expected A-ASSOCIATE-AC, got PDU type {pdu_type:#x}"
        return body

    def p_data(self, *pdvs: tuple[int, int, bytes]) -> None:
        """One P-DATA-TF with (context ID, message control header, fragment) PDVs."""
        body = b"".join(struct.pack(">LBB", len(data) + 2, cid, header) + data for cid, header, data in pdvs)
        self.sock.sendall(struct.pack(">BxL", 0x04, len(body)) + body)

    def response(self) -> dict[int, bytes]:
        pdu_type, body = self.receive()
        assert pdu_type == 0x04, f"expected P-DATA-TF, got PDU type {pdu_type:#x}"
        length, _context, header = struct.unpack_from(">LBB", body)
        assert header == 0x03
        return parse_command(body[6 : 4 + length])


def store_command(ds: Dataset, message_id: int) -> bytes:
    request = C_STORE()
    request.MessageID = message_id
    request.AffectedSOPClassUID = ds.SOPClassUID
    request.AffectedSOPInstanceUID = ds.SOPInstanceUID
    request.Priority = 0
    request.DataSet = BytesIO(b"")
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    command = encode(message.command_set, True, True)
    assert command is not None
    return command


def test_storage_push_is_served_by_the_fast_receiver_and_query_by_pynetdicom(
    scp: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[str] = []
    original = FastStoreAcceptor.serve

    def spy(self: FastStoreAcceptor, sock: socket.socket, address: tuple[str, int], negotiation: Negotiation) -> None:
        served.append(str(negotiation.request.calling_ae_title).strip())
        original(self, sock, address, negotiation)

    monkeypatch.setattr(FastStoreAcceptor, "serve", spy)
    ds = make_dataset()
    ae = AE(ae_title="PUSHER")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="DICOMGW")
    assert assoc.is_established
    assert int(assoc.send_c_store(ds).Status) == status.SUCCESS
    assert int(assoc.send_c_echo().Status) == status.SUCCESS
    assoc.release()
    assert served == ["PUSHER"]

    querier = AE(ae_title="QUERIER")
    querier.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    querier.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    assoc = querier.associate("127.0.0.1", scp.port, ae_title="DICOMGW")
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    statuses = [int(s.Status) for s, _ in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)]
    assoc.release()
    assert statuses[-1] == status.SUCCESS
    assert served == ["PUSHER"], "an association proposing query/retrieve belongs to pynetdicom"

    # A role selection item (as a C-GET requester sends) also goes to pynetdicom.
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CTImageStorage
    role.scu_role, role.scp_role = True, True
    peer = RawPeer(scp.port)
    try:
        peer.sock.sendall(associate_rq((1, CTImageStorage, [ExplicitVRLittleEndian]), extra=(role,)))
        assert peer.receive()[0] == 0x02
    finally:
        peer.close()
    assert served == ["PUSHER"]


def test_a_repeated_request_is_negotiated_once_and_each_association_still_admitted(
    scp: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    negotiated: list[bytes] = []
    original = FastStoreAcceptor._negotiate

    def spy(self: FastStoreAcceptor, raw: bytes) -> Negotiation | None:
        negotiated.append(raw)
        return original(self, raw)

    monkeypatch.setattr(FastStoreAcceptor, "_negotiate", spy)
    ct = (1, CTImageStorage, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
    accepts = []
    for number, contexts in enumerate([(ct,), (ct,), (ct, (3, Verification, [ImplicitVRLittleEndian]))]):
        ds = make_dataset(rows=8, columns=8)
        peer = RawPeer(scp.port)
        try:
            accepts.append(peer.associate(*contexts))
            peer.p_data((1, 0x03, store_command(ds, message_id=number + 1)))
            peer.p_data((1, 0x02, dataset_bytes(to_part10_bytes(ds, ImplicitVRLittleEndian))))
            assert struct.unpack("<H", peer.response()[0x0900])[0] == status.SUCCESS
        finally:
            peer.close()
        key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        assert scp.services.store.head(key) is not None
    assert len(negotiated) == 2, "the second, identical request must reuse the first one's negotiation"
    assert negotiated[0] != negotiated[1]
    assert accepts[0] == accepts[1] != accepts[2]

    # Remembered negotiation or not, admission runs for every association: a full gateway still refuses.
    blocker = RawPeer(scp.port)
    try:
        blocker.associate(ct)
        acceptor = scp.server.fast_store
        assert acceptor is not None
        monkeypatch.setattr(acceptor, "max_associations", 1)
        late = RawPeer(scp.port)
        try:
            late.sock.sendall(associate_rq(ct))
            assert late.receive() == (0x03, bytes((0, 0x02, 0x03, 0x02)))
        finally:
            late.close()
    finally:
        blocker.close()
    assert len(negotiated) == 2


def test_fragmented_message_over_many_pdus_is_stored_and_released(scp: Running) -> None:
    ds = make_dataset(rows=64, columns=64)
    data = dataset_bytes(to_part10_bytes(ds))
    command = store_command(ds, message_id=7)
    peer = RawPeer(scp.port)
    try:
        peer.associate((1, CTImageStorage, [ExplicitVRLittleEndian]))
        # The command split over two PDVs of one PDU, then the data set in 1000-byte PDUs.
        peer.p_data((1, 0x01, command[:20]), (1, 0x03, command[20:]))
        chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
        for n, chunk in enumerate(chunks):
            peer.p_data((1, 0x02 if n == len(chunks) - 1 else 0x00, chunk))
        response = peer.response()
        assert struct.unpack("<H", response[0x0900])[0] == status.SUCCESS
        assert struct.unpack("<H", response[0x0120])[0] == 7
        assert struct.unpack("<H", response[0x0100])[0] == 0x8001
        assert response[0x1000].rstrip(b"\x00").decode() == ds.SOPInstanceUID
        peer.sock.sendall(struct.pack(">BxL", 0x05, 4) + b"\x00" * 4)  # A-RELEASE-RQ
        assert peer.receive() == (0x06, b"\x00" * 4)
        assert peer.closed()
    finally:
        peer.close()
    key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
    assert dataset_bytes(scp.services.store.read(key)) == data


def test_failure_status_carries_an_error_comment(scp: Running) -> None:
    ds = make_dataset(rows=8, columns=8)
    peer = RawPeer(scp.port)
    try:
        peer.associate((1, CTImageStorage, [ExplicitVRLittleEndian]))
        peer.p_data((1, 0x03, store_command(ds, message_id=3)))
        peer.p_data((1, 0x02, b"\x08\x00\x16\x00garbage that is not a data set"))
        response = peer.response()
    finally:
        peer.close()
    assert struct.unpack("<H", response[0x0900])[0] == status.STORAGE_CANNOT_UNDERSTAND_UID
    assert response[0x0902].strip() == b"SOPInstanceUID is missing"
    assert list(scp.services.store.iter_keys()) == []


def _assert_aborted(peer: RawPeer, reason: int) -> None:
    pdu_type, body = peer.receive()
    assert (pdu_type, body[2:]) == (0x07, bytes((0x02, reason))), "expected A-ABORT from the service provider"
    assert peer.closed()


@pytest.mark.parametrize(
    ("pdus", "reason"),
    [
        # a PDV on a context that was never proposed
        ([struct.pack(">BxL", 0x04, 8) + struct.pack(">LBB", 4, 99, 0x03) + b"\x00\x00"], 0x06),
        # a PDU longer than the maximum length we announced (16 KiB)
        ([struct.pack(">BxL", 0x04, 1 << 20)], 0x06),
        # an A-ASSOCIATE-RQ on an established association
        ([associate_rq((1, CTImageStorage, [ExplicitVRLittleEndian]))], 0x02),
        # a data set fragment with no command before it
        ([struct.pack(">BxL", 0x04, 8) + struct.pack(">LBB", 4, 1, 0x02) + b"\x00\x00"], 0x06),
        # a command set that does not parse
        ([struct.pack(">BxL", 0x04, 9) + struct.pack(">LBB", 5, 1, 0x03) + b"\x00\x00\x01"], 0x06),
    ],
    ids=["unknown-context", "pdu-too-long", "unexpected-pdu", "data-before-command", "bad-command"],
)
def test_protocol_errors_abort_the_association_and_the_scp_carries_on(
    scp: Running, pdus: list[bytes], reason: int
) -> None:
    peer = RawPeer(scp.port)
    try:
        peer.associate((1, CTImageStorage, [ExplicitVRLittleEndian]))
        for pdu in pdus:
            peer.sock.sendall(pdu)
        _assert_aborted(peer, reason)
    finally:
        peer.close()
    ae = AE(ae_title="AFTER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="DICOMGW")
    assert assoc.is_established
    assert int(assoc.send_c_echo().Status) == status.SUCCESS
    assoc.release()


@pytest.mark.parametrize("scp", [{"network_timeout": 0.5}], indirect=True)
def test_idle_association_is_aborted_after_the_network_timeout(scp: Running) -> None:
    peer = RawPeer(scp.port)
    try:
        peer.associate((1, Verification, [ImplicitVRLittleEndian]))
        _assert_aborted(peer, 0x00)
    finally:
        peer.close()


@pytest.mark.parametrize("scp", [{"max_associations": 1}], indirect=True)
def test_associations_above_the_limit_are_rejected_transiently(scp: Running) -> None:
    first, second = RawPeer(scp.port), RawPeer(scp.port)
    try:
        first.associate((1, Verification, [ImplicitVRLittleEndian]))
        second.sock.sendall(associate_rq((1, Verification, [ImplicitVRLittleEndian])))
        # A-ASSOCIATE-RJ: rejected-transient, service-provider (presentation), local-limit-exceeded.
        assert second.receive() == (0x03, bytes((0, 0x02, 0x03, 0x02)))
    finally:
        first.close()
        second.close()


def test_shutdown_aborts_associations_in_progress(tmp_path: Path, broker_url: str) -> None:
    settings = make_settings(tmp_path / "data", broker_url=broker_url)
    with gateway_services(settings) as services:
        server = start_scp(services, host="127.0.0.1", port=0)
        peer = RawPeer(int(server.server_address[1]))
        try:
            peer.associate((1, Verification, [ImplicitVRLittleEndian]))
            server.shutdown()
            pdu_type, body = peer.receive()
            assert (pdu_type, body[2]) == (0x07, 0x00)
            assert peer.closed()
        finally:
            peer.close()
