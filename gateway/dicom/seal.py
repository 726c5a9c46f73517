"""A checksum of a Part 10 file kept in its own preamble, so a file torn by a crash mid-write is recognised.

PS3.10 7.1 leaves the 128-byte File Preamble to "specific implementations". The files the ingest
service assembles from DIMSE datasets carry a seal there, and the local-folder store writes them
straight under their key with one fdatasync (`FilesystemStore.create`) instead of a temp file,
fdatasync, rename and folder fsync: one device flush per instance instead of two. A power loss in
the middle of such a write can leave a file whose length is right and whose blocks are not; the
seal is what tells such a file from a whole one (the C-STORE was never answered, so the peer sends
the instance again and the retry replaces it; `reindex` refuses it meanwhile).

Layout of a sealed preamble (little endian), followed by the usual "DICM":
    bytes 0-7    b"DGWSEAL1"
    bytes 8-15   the file's length in bytes
    bytes 16-23  XXH3-64 of the file from byte 128 ("DICM") to its end
    bytes 24-127 zero

XXH3 hashes ~40 GB/s here (13 us for a 0.5 MB CT instance, against 220 us for zlib's CRC-32): the
seal costs the SCP almost nothing. It detects torn writes, not tampering.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import xxhash

PREAMBLE_LENGTH = 128
MAGIC = b"DGWSEAL1"
_LAYOUT = struct.Struct("<8sQQ")


def seal(parts: Sequence[bytes | memoryview]) -> bytes:
    """Return the 128-byte sealed preamble for a file made of the preamble followed by `parts`.

    `parts` begin with "DICM": everything of the file after its preamble, in order.
    """
    hasher = xxhash.xxh3_64()
    length = PREAMBLE_LENGTH
    for part in parts:
        hasher.update(part)
        length += len(part)
    return _LAYOUT.pack(MAGIC, length, hasher.intdigest()).ljust(PREAMBLE_LENGTH, b"\x00")


def is_sealed(preamble: bytes) -> bool:
    """True when `preamble` (the file's first 128 bytes) carries a seal."""
    return len(preamble) >= _LAYOUT.size and preamble[: len(MAGIC)] == MAGIC


def seal_holds(chunks: Iterable[bytes]) -> bool:
    """True when the file given as consecutive chunks is sealed and whole, False when its seal does not hold.

    A file without a seal (its preamble is not ours) is reported whole: it was not written in place.
    """
    hasher = xxhash.xxh3_64()
    head = b""
    length = 0
    for chunk in chunks:
        if len(head) < PREAMBLE_LENGTH:
            needed = PREAMBLE_LENGTH - len(head)
            head += chunk[:needed]
            chunk = chunk[needed:]
            if len(head) == PREAMBLE_LENGTH and not is_sealed(head):
                return True
        hasher.update(chunk)
        length += len(chunk)
    if not is_sealed(head):
        return True
    _magic, sealed_length, digest = _LAYOUT.unpack_from(head)
    return bool(sealed_length == PREAMBLE_LENGTH + length and digest == hasher.intdigest())
