"""The fast receiver's hand-written PS3.7 command sets and PS3.8 P-DATA framing."""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pydicom.uid import CTImageStorage
from pynetdicom.dsutils import decode

from gateway.dimse import fast_store
from gateway.dimse.fast_store import ProtocolError, parse_command, response_command


def test_response_command_decodes_with_pydicom_as_a_c_store_response() -> None:
    command = response_command(0x8001, 42, CTImageStorage, 0xA700, "1.2.3.4", "object store down \\ retry")
    ds = decode(BytesIO(command), True, True)
    assert ds.CommandGroupLength == len(command) - 12
    assert ds.CommandField == 0x8001
    assert ds.MessageIDBeingRespondedTo == 42
    assert ds.CommandDataSetType == 0x0101
    assert ds.Status == 0xA700
    assert ds.AffectedSOPClassUID == CTImageStorage
    assert ds.AffectedSOPInstanceUID == "1.2.3.4"
    assert ds.ErrorComment == "object store down / retry"  # no backslash in LO


def test_echo_response_has_no_instance_or_comment() -> None:
    ds = decode(BytesIO(response_command(0x8030, 1, "1.2.840.10008.1.1", 0)), True, True)
    assert ds.Status == 0
    assert "AffectedSOPInstanceUID" not in ds
    assert "ErrorComment" not in ds


def test_parse_command_reads_elements_and_refuses_truncation() -> None:
    command = response_command(0x8001, 7, CTImageStorage, 0, "1.2.3")
    elements = parse_command(command)
    assert struct.unpack("<H", elements[0x0120])[0] == 7
    assert elements[0x1000] == b"1.2.3\x00"
    with pytest.raises(ProtocolError):
        parse_command(command[:-3])
    with pytest.raises(ProtocolError):
        parse_command(struct.pack("<HHL", 0x0008, 0x0016, 0))  # not group 0000


def test_response_pdus_respect_a_small_peer_maximum() -> None:
    command = fast_store.response_command(0x8001, 1, CTImageStorage, 0, "1.2.3", "a comment")
    pdus = fast_store.p_data_pdus(5, command, peer_max_pdu=32)
    assert all(len(pdu) <= 32 + 6 for pdu in pdus)
    fragments = []
    for n, pdu in enumerate(pdus):
        length, context_id, header = struct.unpack_from(">LBB", pdu, 6)
        assert context_id == 5
        assert header == (0x03 if n == len(pdus) - 1 else 0x01)
        fragments.append(pdu[12 : 10 + length])
    elements = parse_command(b"".join(fragments))
    assert elements[0x0902] == b"a comment "
