"""The seal in the preamble of files written in place: a whole file holds it, a torn one does not."""

from __future__ import annotations

import os

import pytest

from gateway.dicom.seal import MAGIC, PREAMBLE_LENGTH, is_sealed, seal, seal_holds


def sealed_file(size: int = 70_000) -> bytes:
    parts = [b"DICM", os.urandom(200), os.urandom(size)]
    return seal(parts) + b"".join(parts)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("chunk", [1, 7, 127, 128, 129, 4096, 1 << 20])
def test_a_whole_file_holds_its_seal_however_it_is_chunked(chunk: int) -> None:
    data = sealed_file(5_000 if chunk == 1 else 70_000)
    assert is_sealed(data[:PREAMBLE_LENGTH])
    assert data[PREAMBLE_LENGTH : PREAMBLE_LENGTH + 4] == b"DICM"
    assert seal_holds(chunked(data, chunk)) is True


def test_the_seal_covers_length_and_content_and_leaves_the_rest_of_the_preamble_zero() -> None:
    data = sealed_file()
    assert data[: len(MAGIC)] == MAGIC
    assert int.from_bytes(data[8:16], "little") == len(data)
    assert data[24:PREAMBLE_LENGTH] == bytes(PREAMBLE_LENGTH - 24)


@pytest.mark.parametrize(
    "tear",
    [
        pytest.param(lambda d: d[: len(d) // 2], id="cut short"),
        pytest.param(lambda d: d[:-1], id="last byte missing"),
        pytest.param(lambda d: d + b"\x00", id="longer"),
        pytest.param(lambda d: d[:40_000] + bytes(4096) + d[44_096:], id="a block never written"),
        pytest.param(lambda d: d[:200] + bytes([d[200] ^ 1]) + d[201:], id="one bit in the file meta"),
        pytest.param(lambda d: d[:20] + bytes([d[20] ^ 0x80]) + d[21:], id="one bit of the digest"),
        pytest.param(lambda d: d[:60], id="shorter than the preamble"),
    ],
)
def test_a_torn_file_does_not_hold_its_seal(tear: object) -> None:
    data = sealed_file()
    torn = tear(data)  # type: ignore[operator]
    assert torn != data
    assert seal_holds(chunked(torn, 4096)) is False


def test_a_file_without_a_seal_is_taken_as_written_atomically() -> None:
    plain = bytes(PREAMBLE_LENGTH) + b"DICM" + os.urandom(1000)
    assert not is_sealed(plain[:PREAMBLE_LENGTH])
    assert seal_holds([plain]) is True
    assert seal_holds([b"short"]) is True  # not ours to judge: the header reader refuses it
