"""UID validation (PS3.5 9.1) applied before a UID touches a key, a path or a query."""

from __future__ import annotations

import re

from gateway.errors import InvalidUID

# PS3.5 9.1: components of digits, no leading zero unless the component is "0", at most 64 chars.
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
MAX_UID_LENGTH = 64


def is_valid_uid(value: str) -> bool:
    """Return True when `value` is a well-formed UID."""
    return len(value) <= MAX_UID_LENGTH and _UID_RE.match(value) is not None


def validate_uid(value: object, name: str) -> str:
    """Return the UID stripped of DICOM padding; raise InvalidUID naming the attribute otherwise."""
    if value is None or value == "":
        raise InvalidUID(f"{name} is missing")
    if not isinstance(value, str):
        raise InvalidUID(f"{name} is not a single UID value")
    uid = value.rstrip("\x00 ")
    if len(uid) > MAX_UID_LENGTH:
        raise InvalidUID(f"{name} is longer than {MAX_UID_LENGTH} characters")
    if _UID_RE.match(uid) is None:
        raise InvalidUID(f"{name} {uid[:70]!r} is not a valid UID")
    return uid
