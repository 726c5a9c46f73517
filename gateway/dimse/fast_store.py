"""The fast C-STORE receiver: storage-only associations served on the accepting thread, without pynetdicom's reactors.

Why this is written by hand: pynetdicom runs each association on two threads that poll each other
through queues with 1 ms sleeps, and reassembles every PDV through several copies. For a modality
pushing one 0.5 MB CT image at a time that costs more than the whole rest of the ingest path: a bare
pynetdicom SCP that stores nothing answers ~170 C-STORE/s on this class of machine, below what
Orthanc does while also indexing. The DIMSE traffic of a storage push is small and fixed (PS3.8 9.3
PDUs, PS3.7 C-STORE and C-ECHO commands), so this module serves it directly with blocking reads into
one buffer per PDU, and negotiates the association with acse.py; pynetdicom serves every other
association.

Negotiation is remembered per distinct A-ASSOCIATE-RQ: a modality sends the same request bytes on every
association, and for a storage-only request the outcome (the accepted contexts and the A-ASSOCIATE-AC)
depends on those bytes alone; admission (AE title policy, association limit) still runs for every
association.

An association is served here only when its A-ASSOCIATE-RQ (read with MSG_PEEK, so nothing is
consumed otherwise) proposes nothing but storage and verification SOP classes, and no user-information
item beyond maximum length, implementation identity and asynchronous operations window; TLS
connections, query/retrieve, role selection, extended negotiation and user identity go to pynetdicom.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from gateway.dimse.acse import ACCEPTANCE, AssociateRequest, associate_accept, negotiate, parse_associate_request
from gateway.dimse.ae import FIND_SOP_CLASSES, GET_SOP_CLASSES, MOVE_SOP_CLASSES, Rejection
from gateway.dimse.handlers import AssociationTracker, PeerSession, store_instance
from gateway.dimse.status import SUCCESS
from gateway.ingest import IngestService

log = structlog.get_logger(__name__)

_LARGEST_ASSOCIATE_RQ = 1 << 16  # an A-ASSOCIATE-RQ this large is unusual: pynetdicom may have it
_LARGEST_PDU_UNLIMITED = 1 << 28  # the cap on one PDU when max_pdu is 0 ("no limit")
_REMEMBERED_NEGOTIATIONS = 32  # distinct A-ASSOCIATE-RQs (peers × their request variants) kept decoded

# PS3.8 9.3.1 PDU types.
_A_ASSOCIATE_RQ = 0x01
_P_DATA_TF = 0x04
_A_RELEASE_RQ = 0x05
_A_ABORT = 0x07

# PS3.8 9.3.8 A-ABORT: source 0 service user, 2 service provider; provider reasons.
_ABORT_SOURCE_USER = 0x00
_ABORT_SOURCE_PROVIDER = 0x02
_ABORT_REASON_NOT_SPECIFIED = 0x00
_ABORT_REASON_UNEXPECTED_PDU = 0x02
_ABORT_REASON_INVALID_PARAMETER = 0x06

# PS3.7 E.1 command fields and the "no data set" value of Command Data Set Type.
_C_STORE_RQ = 0x0001
_C_STORE_RSP = 0x8001
_C_ECHO_RQ = 0x0030
_C_ECHO_RSP = 0x8030
_NO_DATA_SET = 0x0101

_PDU_HEADER = struct.Struct(">BxL")
_PDV_HEADER = struct.Struct(">LBB")
_COMMAND_ELEMENT = struct.Struct("<HHL")


class ProtocolError(Exception):
    """The peer broke PS3.8 / PS3.7: the association is aborted with `reason`."""

    def __init__(self, message: str, reason: int = _ABORT_REASON_INVALID_PARAMETER) -> None:
        super().__init__(message)
        self.reason = reason


class PeerClosed(Exception):
    """The peer closed the connection."""


# --- PS3.8 PDU and PS3.7 command encoding (the few fixed shapes this receiver sends) ------------------


def _pdu(pdu_type: int, body: bytes) -> bytes:
    return _PDU_HEADER.pack(pdu_type, len(body)) + body


def abort_pdu(source: int, reason: int) -> bytes:
    """A-ABORT (PS3.8 9.3.8)."""
    return _pdu(_A_ABORT, bytes((0, 0, source, reason)))


def reject_pdu(rejection: Rejection, source: int) -> bytes:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4)."""
    return _pdu(0x03, bytes((0, rejection.result, source, rejection.diagnostic)))


RELEASE_RP = _pdu(0x06, b"\x00\x00\x00\x00")


def _command_element(element: int, value: bytes) -> bytes:
    return _COMMAND_ELEMENT.pack(0x0000, element, len(value)) + value


def _uid(value: str) -> bytes:
    data = value.encode("ascii")
    return data + b"\x00" if len(data) % 2 else data


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def response_command(
    command_field: int, message_id: int, sop_class_uid: str, status: int, sop_instance_uid: str = "", comment: str = ""
) -> bytes:
    """A C-STORE-RSP or C-ECHO-RSP command set, implicit VR little endian (PS3.7 6.3.1, 9.3.1.2, 9.3.5.2)."""
    elements = [
        _command_element(0x0002, _uid(sop_class_uid)),
        _command_element(0x0100, _us(command_field)),
        _command_element(0x0120, _us(message_id)),
        _command_element(0x0800, _us(_NO_DATA_SET)),
        _command_element(0x0900, _us(status)),
    ]
    if comment:
        # Error Comment (0000,0902) LO: at most 64 characters, no backslash, even length.
        text = comment.replace("\\", "/")[:64].encode("ascii", "replace")
        elements.append(_command_element(0x0902, text + b" " if len(text) % 2 else text))
    if sop_instance_uid:
        elements.append(_command_element(0x1000, _uid(sop_instance_uid)))
    body = b"".join(elements)
    return _command_element(0x0000, struct.pack("<L", len(body))) + body


def parse_command(data: bytes) -> dict[int, bytes]:
    """The elements of a command set (group 0000, implicit VR little endian) by element number."""
    elements: dict[int, bytes] = {}
    offset, end = 0, len(data)
    while offset < end:
        if offset + 8 > end:
            raise ProtocolError("truncated command set element")
        group, element, length = _COMMAND_ELEMENT.unpack_from(data, offset)
        offset += 8
        if group != 0x0000 or offset + length > end:
            raise ProtocolError(f"invalid command set element ({group:04X},{element:04X})")
        elements[element] = data[offset : offset + length]
        offset += length
    return elements


def _command_us(elements: dict[int, bytes], element: int) -> int:
    value = elements.get(element)
    if value is None or len(value) != 2:
        raise ProtocolError(f"command element (0000,{element:04X}) is missing or not US")
    result: int = struct.unpack("<H", value)[0]
    return result


def _command_uid(elements: dict[int, bytes], element: int) -> str:
    return elements.get(element, b"").rstrip(b"\x00 ").decode("ascii", "replace")


def p_data_pdus(context_id: int, command: bytes, peer_max_pdu: int) -> list[bytes]:
    """The P-DATA-TF PDUs carrying one command set, fragmented to the peer's maximum PDU length."""
    fragment = len(command) if peer_max_pdu == 0 else max(1, min(len(command), peer_max_pdu - 6))
    pdus = []
    for start in range(0, len(command), fragment):
        piece = command[start : start + fragment]
        header = 0x03 if start + fragment >= len(command) else 0x01  # command; last fragment
        pdus.append(_pdu(_P_DATA_TF, _PDV_HEADER.pack(len(piece) + 2, context_id, header) + piece))
    return pdus


# --- Choosing the associations served here -------------------------------------------------------------


def storage_transfer_syntaxes(ae: AE) -> dict[str, frozenset[str]]:
    """Our storage SOP classes and Verification, each with the transfer syntaxes we accept it in."""
    query_retrieve = {str(uid) for uid in (*FIND_SOP_CLASSES, *MOVE_SOP_CLASSES, *GET_SOP_CLASSES)}
    return {
        str(context.abstract_syntax): frozenset(str(ts) for ts in context.transfer_syntax)
        for context in ae.supported_contexts
        if str(context.abstract_syntax) not in query_retrieve
    }


def peek_associate_request(sock: socket.socket, timeout: float) -> bytes | None:
    """The first PDU when it is an A-ASSOCIATE-RQ, read without consuming it; None otherwise."""
    deadline = time.monotonic() + timeout
    wanted = 6
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        readable, _, _ = select.select([sock], [], [], remaining)
        if not readable:
            return None
        data = sock.recv(wanted, socket.MSG_PEEK)
        if not data or data[0] != _A_ASSOCIATE_RQ:
            return None
        if wanted == 6 and len(data) == 6:
            _, length = _PDU_HEADER.unpack(data)
            if length > _LARGEST_ASSOCIATE_RQ:
                return None
            wanted = 6 + length
            continue
        if len(data) >= wanted:
            return data
        time.sleep(0.001)  # the rest of a split A-ASSOCIATE-RQ is in flight; select() would not wait


# --- Serving one association ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Negotiation:
    """What one A-ASSOCIATE-RQ decides, made once per distinct request bytes and shared by its associations."""

    request: AssociateRequest
    contexts: dict[int, tuple[str, str]]  # accepted context ID -> (abstract syntax, transfer syntax)
    accept_pdu: bytes  # the A-ASSOCIATE-AC to send once the association is admitted


@dataclass
class _Message:
    """A DIMSE message being reassembled from PDVs."""

    context_id: int
    command: list[bytes]
    elements: dict[int, bytes] | None = None
    data: list[memoryview] | None = None


class FastStoreAcceptor:
    """Serves storage-only associations of one listening port; shared by the port's connection threads."""

    def __init__(
        self,
        ae: AE,
        tracker: AssociationTracker,
        ingest: IngestService,
        max_pdu: int,
        network_timeout: float,
        max_associations: int,
    ) -> None:
        self.ae = ae
        self.tracker = tracker
        self.ingest = ingest
        self.max_pdu = max_pdu
        self.network_timeout = network_timeout
        self.max_associations = max_associations
        self.transfer_syntaxes = storage_transfer_syntaxes(ae)
        # The abstract syntaxes a fast association may propose (Verification unsupported: refused by negotiation).
        self.abstract_syntaxes = frozenset(self.transfer_syntaxes) | {str(Verification)}
        self._active: dict[socket.socket, threading.Lock] = {}
        self._negotiations: OrderedDict[bytes, Negotiation | None] = OrderedDict()  # see the module docstring
        self._lock = threading.Lock()

    def claim(self, sock: socket.socket) -> Negotiation | None:
        """Peek at a new connection; return its negotiation when this receiver should serve it."""
        raw = peek_associate_request(sock, self.network_timeout)
        if raw is None:
            return None
        with self._lock:
            if raw in self._negotiations:
                self._negotiations.move_to_end(raw)
                return self._negotiations[raw]
        negotiation = self._negotiate(raw)
        with self._lock:
            self._negotiations[raw] = negotiation
            while len(self._negotiations) > _REMEMBERED_NEGOTIATIONS:
                self._negotiations.popitem(last=False)
        return negotiation

    def _negotiate(self, raw: bytes) -> Negotiation | None:
        request = parse_associate_request(raw)
        # Anything but storage and verification (query/retrieve, whose contexts a permission check may
        # refuse) is pynetdicom's to negotiate.
        if request is None or any(cx.abstract_syntax not in self.abstract_syntaxes for cx in request.contexts):
            return None
        results = negotiate(request, self.transfer_syntaxes)
        contexts = {r.context_id: (r.abstract_syntax, r.transfer_syntax) for r in results if r.result == ACCEPTANCE}
        accept = associate_accept(
            request, results, self.max_pdu, self.ae.implementation_class_uid, self.ae.implementation_version_name or ""
        )
        return Negotiation(request, contexts, accept)

    def active_count(self) -> int:
        with self._lock:
            return len(self._active)

    def serve(self, sock: socket.socket, address: tuple[str, int], negotiation: Negotiation) -> None:
        """Run one association to its end (release, abort, error or timeout), then close the socket."""
        send_lock = threading.Lock()
        with self._lock:
            self._active[sock] = send_lock
        try:
            _FastAssociation(self, sock, address, negotiation, send_lock).run()
        finally:
            with self._lock:
                self._active.pop(sock, None)
            try:
                sock.close()
            except OSError:
                pass

    def abort_all(self) -> None:
        """Abort every association in progress (server shutdown): A-ABORT, then close the connection."""
        with self._lock:
            active = list(self._active.items())
        for sock, send_lock in active:
            with send_lock:
                try:
                    sock.sendall(abort_pdu(_ABORT_SOURCE_USER, _ABORT_REASON_NOT_SPECIFIED))
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _FastAssociation:
    """One storage association: A-ASSOCIATE-AC or -RJ, then C-STORE / C-ECHO until release."""

    def __init__(
        self,
        acceptor: FastStoreAcceptor,
        sock: socket.socket,
        address: tuple[str, int],
        negotiation: Negotiation,
        send_lock: threading.Lock,
    ) -> None:
        self.acceptor = acceptor
        self.sock = sock
        self.negotiation = negotiation
        request = negotiation.request
        self.send_lock = send_lock
        self.session = PeerSession(
            calling_ae=request.calling_ae_title,
            called_ae=request.called_ae_title,
            address=str(address[0]),
            port=int(address[1]),
            tls=False,
            entry=None,
        )
        self.peer: dict[str, Any] = {"calling_ae": self.session.calling_ae, "peer": f"{address[0]}:{address[1]}"}
        self.peer_max_pdu = request.maximum_length
        self.contexts = negotiation.contexts  # used once the association is accepted
        self.largest_pdu = acceptor.max_pdu + 6 if acceptor.max_pdu else _LARGEST_PDU_UNLIMITED

    # -- socket I/O

    def _send(self, data: bytes) -> None:
        with self.send_lock:
            self.sock.sendall(data)

    def _receive_exactly(self, size: int) -> bytes:
        # recv() into a new bytes object, not recv_into() a bytearray: CPython leaves the new object's
        # memory uninitialised, where bytearray(size) zeroes it first (2 % of the SCP's CPU for 0.5 MB
        # per instance, with the GIL held). MSG_WAITALL on a blocking socket: the kernel gathers the
        # whole PDU in one call (see _use_kernel_timeouts), where a Python socket timeout costs a poll()
        # and a recv() per chunk. A signal or a timeout can still end the call early: then the rest
        # is read and joined.
        parts: list[bytes] = []
        received = 0
        while received < size:
            try:
                part = self.sock.recv(size - received, socket.MSG_WAITALL)
            except BlockingIOError as exc:  # SO_RCVTIMEO expired
                raise TimeoutError("network timeout") from exc
            if not part:
                raise PeerClosed
            parts.append(part)
            received += len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _use_kernel_timeouts(self) -> None:
        # Why: with settimeout() Python makes the socket non-blocking and calls poll() before every recv()
        # and send(), each releasing and retaking the GIL; with four associations pushing, that was ~200
        # futex calls per instance. A blocking socket with the timeout kept by the kernel (SO_RCVTIMEO,
        # SO_SNDTIMEO) takes one call per PDU.
        seconds = self.acceptor.network_timeout
        timeval = struct.pack("@ll", int(seconds), int(seconds % 1 * 1_000_000))
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)

    def _receive_pdu(self) -> tuple[int, bytes]:
        pdu_type, length = _PDU_HEADER.unpack(self._receive_exactly(6))
        if length > self.largest_pdu:
            raise ProtocolError(f"PDU of {length} bytes exceeds our maximum length {self.acceptor.max_pdu}")
        return pdu_type, self._receive_exactly(length)

    # -- the association

    def run(self) -> None:
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._use_kernel_timeouts()
        try:
            _, length = _PDU_HEADER.unpack(self._receive_exactly(6))
            self._receive_exactly(length)  # consume the A-ASSOCIATE-RQ that claim() decoded
            if not self._associate():
                return
        except (OSError, PeerClosed):
            return
        self.session.result = "aborted"
        try:
            self._serve_messages()
        except ProtocolError as exc:
            log.warning("dimse.association.aborted", reason=str(exc), **self.peer)
            self._send_quietly(abort_pdu(_ABORT_SOURCE_PROVIDER, exc.reason))
        except TimeoutError:
            log.warning("dimse.association.aborted", reason="network timeout", **self.peer)
            self._send_quietly(abort_pdu(_ABORT_SOURCE_PROVIDER, _ABORT_REASON_NOT_SPECIFIED))
        except (OSError, PeerClosed):
            pass  # connection lost or closed by the peer: the session stays "aborted"
        finally:
            self.acceptor.tracker.closed(self.session, self.peer)

    def _send_quietly(self, data: bytes) -> None:
        try:
            self._send(data)
        except OSError:
            pass

    def _associate(self) -> bool:
        acceptor = self.acceptor
        busy = len(acceptor.ae.active_associations) + acceptor.active_count() > acceptor.max_associations
        if busy:
            log.warning("dimse.association.rejected", reason="too many associations", **self.peer)
            self._send(
                reject_pdu(Rejection("too many associations", 0x02, 0x02), 0x03)
            )  # PS3.8 9.3.4: service-provider (presentation), local limit
            return False
        rejection = acceptor.tracker.admit(self.session, self.peer)
        if rejection is not None:
            self._send(reject_pdu(rejection, 0x01))
            return False
        self._send(self.negotiation.accept_pdu)
        log.info("dimse.association.accepted", receiver="fast", contexts=len(self.contexts), **self.peer)
        return True

    def _serve_messages(self) -> None:
        message: _Message | None = None
        while True:
            pdu_type, body = self._receive_pdu()
            if pdu_type == _A_RELEASE_RQ:
                if message is not None:
                    raise ProtocolError("A-RELEASE-RQ in the middle of a DIMSE message", _ABORT_REASON_UNEXPECTED_PDU)
                self._send(RELEASE_RP)
                self.session.result = "released"
                return
            if pdu_type == _A_ABORT:
                log.info("dimse.association.peer_aborted", **self.peer)
                return
            if pdu_type != _P_DATA_TF:
                raise ProtocolError(f"unexpected PDU type 0x{pdu_type:02X}", _ABORT_REASON_UNEXPECTED_PDU)
            message = self._read_pdvs(body, message)

    def _read_pdvs(self, body: bytes, message: _Message | None) -> _Message | None:
        view = memoryview(body)
        offset, end = 0, len(body)
        if end == 0:
            raise ProtocolError("P-DATA-TF without a PDV")
        while offset < end:
            if offset + 6 > end:
                raise ProtocolError("truncated PDV item")
            length, context_id, header = _PDV_HEADER.unpack_from(body, offset)
            if length < 2 or offset + 4 + length > end:
                raise ProtocolError("PDV item length out of bounds")
            fragment = view[offset + 6 : offset + 4 + length]
            offset += 4 + length
            if context_id not in self.contexts:
                raise ProtocolError(f"PDV on presentation context {context_id}, which was not accepted")
            is_command, is_last = bool(header & 0x01), bool(header & 0x02)
            if message is None:
                if not is_command:
                    raise ProtocolError("data set fragment before its command")
                message = _Message(context_id, [])
            if context_id != message.context_id:
                raise ProtocolError("PDVs of one message on two presentation contexts")
            if is_command:
                if message.elements is not None:
                    raise ProtocolError("command fragment after the command set ended")
                message.command.append(bytes(fragment))
                if is_last:
                    message.elements = parse_command(b"".join(message.command))
                    if _command_us(message.elements, 0x0800) == _NO_DATA_SET:
                        self._dispatch(message, [])
                        message = None
                    else:
                        message.data = []
            else:
                if message.data is None:
                    raise ProtocolError("data set fragment before the command set ended")
                # Memoryviews of the PDU buffers: the one copy is the Part 10 file's join (ingest.py).
                message.data.append(fragment)
                if is_last:
                    self._dispatch(message, message.data)
                    message = None
        return message

    def _dispatch(self, message: _Message, data: Sequence[memoryview]) -> None:
        elements = message.elements
        assert elements is not None
        command_field = _command_us(elements, 0x0100)
        message_id = _command_us(elements, 0x0110)
        abstract, transfer_syntax = self.contexts[message.context_id]
        if command_field == _C_ECHO_RQ:
            self.session.count("C-ECHO")
            response = response_command(_C_ECHO_RSP, message_id, _command_uid(elements, 0x0002) or abstract, SUCCESS)
        elif command_field == _C_STORE_RQ:
            if not any(data):
                raise ProtocolError("C-STORE-RQ without a data set")
            sop_class = _command_uid(elements, 0x0002)
            sop_instance = _command_uid(elements, 0x1000)
            status, comment = store_instance(
                self.acceptor.ingest,
                self.acceptor.tracker,
                self.session,
                data,
                transfer_syntax,
                sop_class,
                sop_instance,
                self.peer,
            )
            response = response_command(_C_STORE_RSP, message_id, sop_class, status, sop_instance, comment)
        else:
            raise ProtocolError(f"command 0x{command_field:04X} is not served on a storage association")
        for pdu in p_data_pdus(message.context_id, response, self.peer_max_pdu):
            self._send(pdu)
