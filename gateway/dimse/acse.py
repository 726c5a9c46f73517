"""The A-ASSOCIATE-RQ of a storage-only association read, negotiated and answered without pynetdicom (PS3.8 9.3).

Why this is written by hand: pynetdicom decodes a request into objects that build and validate a UID
for every proposed abstract and transfer syntax, and preparing our side of the negotiation builds a
context of ~35 validated transfer syntaxes for every SOP class proposed. For storescu's 128 contexts
that is 55-75 ms of CPU. A fresh SCP process pays it for every association that arrives before the
first one is negotiated (fast_store.py remembers the outcome): a 4-association push on two SCP
processes paid it four times, ~5% of the CPU of a 1,000-instance push. Reading the few fields a
storage negotiation needs takes a fraction of a millisecond.

This reader knows only what a storage push proposes: the DICOM application context, presentation
contexts of one abstract syntax and one or more transfer syntaxes, and user information with the
maximum length, the implementation identity and the asynchronous operations window. Anything else
(role selection, extended negotiation, user identity, unknown items, a malformed PDU) makes it return
None, and the association is left to pynetdicom, which judges and answers it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"  # PS3.7 A.2.1 DICOM Application Context Name

# PS3.8 9.3.2 / 9.3.3 item types.
_APPLICATION_CONTEXT = 0x10
_PRESENTATION_CONTEXT_RQ = 0x20
_PRESENTATION_CONTEXT_AC = 0x21
_ABSTRACT_SYNTAX = 0x30
_TRANSFER_SYNTAX = 0x40
_USER_INFORMATION = 0x50
_MAXIMUM_LENGTH = 0x51
_IMPLEMENTATION_CLASS_UID = 0x52
_ASYNCHRONOUS_OPERATIONS_WINDOW = 0x53  # not answered: the default window (1, 1) applies
_IMPLEMENTATION_VERSION_NAME = 0x55

# PS3.8 9.3.3.2 presentation context results.
ACCEPTANCE = 0x00
ABSTRACT_SYNTAX_NOT_SUPPORTED = 0x03
TRANSFER_SYNTAXES_NOT_SUPPORTED = 0x04

_A_ASSOCIATE_RQ = 0x01
_A_ASSOCIATE_AC = 0x02
_FIXED_FIELDS = 74  # PDU header, protocol version, reserved, called and calling AE titles, reserved
_ITEM_HEADER = struct.Struct(">BxH")


@dataclass(frozen=True)
class ProposedContext:
    """One presentation context of the request: its ID, abstract syntax and transfer syntaxes in the peer's order."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class AssociateRequest:
    """What a storage negotiation needs from an A-ASSOCIATE-RQ."""

    ae_titles: bytes  # the called and calling AE title fields as received (32 bytes), echoed in the A-ASSOCIATE-AC
    contexts: tuple[ProposedContext, ...]
    maximum_length: int  # the largest PDU the peer receives; 0: no limit

    @property
    def called_ae_title(self) -> str:
        return self.ae_titles[:16].decode("ascii").strip(" \x00")

    @property
    def calling_ae_title(self) -> str:
        return self.ae_titles[16:].decode("ascii").strip(" \x00")


@dataclass(frozen=True)
class ContextResult:
    """Our answer to one proposed context: a result, and the transfer syntax accepted (else the peer's first)."""

    context_id: int
    abstract_syntax: str
    result: int
    transfer_syntax: str


def _items(data: bytes, start: int) -> Iterator[tuple[int, bytes]]:
    """(type, value) of each item from `start` to the end; ValueError when an item overruns."""
    offset = start
    while offset < len(data):
        if offset + 4 > len(data):
            raise ValueError("truncated item header")
        kind, length = _ITEM_HEADER.unpack_from(data, offset)
        offset += 4
        if offset + length > len(data):
            raise ValueError("item overruns its PDU")
        yield kind, data[offset : offset + length]
        offset += length


def _uid(value: bytes) -> str:
    # PS3.8 9.3.2.2: UIDs here are not padded, but some implementations pad with a NUL anyway.
    return value.rstrip(b"\x00 ").decode("ascii")


def _presentation_context(value: bytes) -> ProposedContext | None:
    if len(value) < 4:
        return None
    abstract: list[str] = []
    transfer: list[str] = []
    for kind, item in _items(value, 4):
        if kind == _ABSTRACT_SYNTAX:
            abstract.append(_uid(item))
        elif kind == _TRANSFER_SYNTAX:
            transfer.append(_uid(item))
        else:
            return None
    if len(abstract) != 1 or not transfer:
        return None
    return ProposedContext(value[0], abstract[0], tuple(transfer))


def _maximum_length(value: bytes) -> int | None:
    """The maximum length from a user information item with nothing a storage receiver would have to answer."""
    maximum: int | None = None
    implementation = False
    for kind, item in _items(value, 0):
        if kind == _MAXIMUM_LENGTH and len(item) == 4 and maximum is None:
            maximum = int.from_bytes(item, "big")
        elif kind == _IMPLEMENTATION_CLASS_UID and item:
            implementation = True
        elif kind not in (_IMPLEMENTATION_VERSION_NAME, _ASYNCHRONOUS_OPERATIONS_WINDOW):
            return None
    return maximum if implementation else None


def parse_associate_request(raw: bytes) -> AssociateRequest | None:
    """The request when it is a plain, well-formed storage request this module can answer; None otherwise."""
    if len(raw) < _FIXED_FIELDS or raw[0] != _A_ASSOCIATE_RQ or int.from_bytes(raw[2:6], "big") != len(raw) - 6:
        return None
    if raw[6:8] != b"\x00\x01":  # PS3.8 9.3.2: protocol version 1
        return None
    application_context: list[str] = []
    contexts: list[ProposedContext] = []
    maximum: list[int] = []
    try:
        raw[10:42].decode("ascii")
        for kind, value in _items(raw, _FIXED_FIELDS):
            if kind == _APPLICATION_CONTEXT:
                application_context.append(_uid(value))
            elif kind == _PRESENTATION_CONTEXT_RQ:
                context = _presentation_context(value)
                if context is None:
                    return None
                contexts.append(context)
            elif kind == _USER_INFORMATION:
                length = _maximum_length(value)
                if length is None:
                    return None
                maximum.append(length)
            else:
                return None
    except (ValueError, UnicodeDecodeError):
        return None
    if application_context != [APPLICATION_CONTEXT_NAME] or len(maximum) != 1 or not contexts:
        return None
    ids = [context.context_id for context in contexts]
    if len(set(ids)) != len(ids) or any(cid % 2 == 0 for cid in ids):  # PS3.8 9.3.2.2: unique odd IDs
        return None
    return AssociateRequest(raw[10:42], tuple(contexts), maximum[0])


def negotiate(request: AssociateRequest, supported: Mapping[str, frozenset[str]]) -> list[ContextResult]:
    """Accept each proposed context in the transfer syntax the peer lists first among those we support.

    The peer's order is taken across all its contexts of one SOP class (an SCU lists its native
    encoding first; any other choice makes it convert before sending). Results are in context ID order.
    """
    order: dict[str, list[str]] = {}
    for context in request.contexts:
        listed = order.setdefault(context.abstract_syntax, [])
        listed.extend(ts for ts in context.transfer_syntaxes if ts not in listed)
    results = []
    for context in sorted(request.contexts, key=lambda c: c.context_id):
        ours = supported.get(context.abstract_syntax)
        offered = context.transfer_syntaxes
        chosen = None
        if ours is None:
            result = ABSTRACT_SYNTAX_NOT_SUPPORTED
        else:
            chosen = next((ts for ts in order[context.abstract_syntax] if ts in ours and ts in offered), None)
            result = TRANSFER_SYNTAXES_NOT_SUPPORTED if chosen is None else ACCEPTANCE
        results.append(ContextResult(context.context_id, context.abstract_syntax, result, chosen or offered[0]))
    return results


def _item(kind: int, value: bytes) -> bytes:
    return _ITEM_HEADER.pack(kind, len(value)) + value


def associate_accept(
    request: AssociateRequest,
    results: list[ContextResult],
    maximum_length: int,
    implementation_class_uid: str,
    implementation_version_name: str,
) -> bytes:
    """The A-ASSOCIATE-AC PDU (PS3.8 9.3.3) for `results`."""
    user = [
        _item(_MAXIMUM_LENGTH, maximum_length.to_bytes(4, "big")),
        _item(_IMPLEMENTATION_CLASS_UID, implementation_class_uid.encode("ascii")),
    ]
    if implementation_version_name:
        user.append(_item(_IMPLEMENTATION_VERSION_NAME, implementation_version_name.encode("ascii")))
    items = [
        _item(_APPLICATION_CONTEXT, APPLICATION_CONTEXT_NAME.encode("ascii")),
        *(
            _item(
                _PRESENTATION_CONTEXT_AC,
                bytes((r.context_id, 0, r.result, 0)) + _item(_TRANSFER_SYNTAX, r.transfer_syntax.encode("ascii")),
            )
            for r in results
        ),
        _item(_USER_INFORMATION, b"".join(user)),
    ]
    # Protocol version 1; the AE title fields echo the request's; the 32 reserved bytes are zero.
    body = b"\x00\x01\x00\x00" + request.ae_titles + bytes(32) + b"".join(items)
    return struct.pack(">BxL", _A_ASSOCIATE_AC, len(body)) + body
