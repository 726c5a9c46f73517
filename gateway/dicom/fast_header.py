"""A fast reader of Part 10 headers for the ingest and indexing hot paths; pydicom stays the reference.

Written by hand because pydicom's general reader was the largest single cost of indexing: parsing a
header, reading the indexed attributes and building the DICOM JSON took 2.5-2.9 ms per CT instance with
pydicom, most of it in per-element object conversion, against ~0.5 ms here. It reads only what it can
read exactly as pydicom does (`Dataset.to_json_dict` and `Dataset.get`), and raises `Unsupported` for
everything else, so the caller falls back to pydicom and the result never depends on which path ran:
  - transfer syntaxes encoded in little endian, explicit or implicit VR (not deflate, not big endian);
  - text in ASCII, ISO 8859-1 or UTF-8 (no other character set, no ISO 2022 escapes), other string
    values in ASCII;
  - no UN values, no private tags in implicit VR, no ambiguous VR except the US/SS pixel value tags.
tests/unit/dicom/test_fast_header.py checks it against pydicom on every file in the test corpus.
"""

from __future__ import annotations

import base64
import functools
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom import config as pydicom_config
from pydicom import filewriter as pydicom_filewriter
from pydicom import hooks as pydicom_hooks
from pydicom.datadict import dictionary_VR
from pydicom.uid import UID

PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})  # where pydicom's stop_before_pixels stops
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"}
_STRING_VRS = frozenset({"AS", "CS", "DA", "DT", "TM"})  # pydicom's convert_string
_TEXT_VRS = frozenset({"LO", "SH", "UC"})  # convert_text: each value loses trailing NUL and space
_SINGLE_TEXT_VRS = frozenset({"LT", "ST", "UT"})  # convert_single_string
_KNOWN_VRS = (
    _BINARY_VRS | _STRING_VRS | _TEXT_VRS | _SINGLE_TEXT_VRS | set(_NUMBER_FORMATS) | {"AE", "AT", "DS", "IS"}
) | {"PN", "SQ", "UI", "UR"}
# pydicom rewrites these after reading (LUT descriptors' first value, US/SS by Pixel Representation).
_LUT_DESCRIPTOR_TAGS: frozenset[int] = frozenset(getattr(pydicom_hooks, "_LUT_DESCRIPTOR_TAGS", ()))
_AMBIGUOUS_US_SS_TAGS: frozenset[int] = frozenset(getattr(pydicom_filewriter, "_AMBIGUOUS_US_SS_TAGS", ()))
_ELEMENT_HEADER = struct.Struct("<HHL")  # group, element, and the 4 bytes after them
_LONG_LENGTH = struct.Struct("<L")
_VR_NAMES = {vr.encode("ascii"): vr for vr in _KNOWN_VRS}  # the 2 VR bytes -> str in one lookup
_PIXEL_REPRESENTATION = 0x00280103
_SPECIFIC_CHARACTER_SET = 0x00080005
_READ_ALWAYS = frozenset({_SPECIFIC_CHARACTER_SET, _PIXEL_REPRESENTATION})  # they change how others read
# The character sets whose text this reader decodes, as pydicom does (Python codecs); others are declined
# unless their text is plain ASCII. No Specific Character Set means pydicom's default, ISO 8859-1.
_CODECS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}


# Converted values and their DICOM JSON by (VR, value bytes, codec), for the indexing path (with JSON).
# The instances of a series repeat most of their header (patient, study, series, equipment, acquisition:
# about 80 % of a CT header's elements), and converting values and building their JSON elements was most
# of the indexing worker's CPU (3x less with this). Results are shared between headers, so callers treat
# `values` and `json` as read-only. Bounded: cleared when full.
_MEMO: dict[tuple[str, bytes, str | None], tuple[Any, dict[str, Any]]] = {}
_MEMO_ENTRIES = 8192
_MEMO_MAX_VALUE = 256  # longer values (texts, binary) are rarely repeated and would bloat the memo


class Unsupported(Exception):
    """The header holds something only pydicom reads correctly; use the pydicom path."""


class NeedMore(Unsupported):
    """The header runs past the bytes given; call again with more of the object."""


@dataclass(frozen=True)
class FastHeader:
    """What the hot paths need from a Part 10 header."""

    transfer_syntax_uid: str
    implicit_vr: bool
    meta: dict[int, str]  # file meta UI values by tag
    values: dict[str, Any]  # top-level values of the requested tags by keyword, as pydicom's Dataset.get gives
    json: dict[str, Any] | None  # DICOM JSON of the dataset up to Pixel Data, as pydicom's to_json_dict gives
    pixel_data_at: int | None  # offset of the top-level pixel data element, where pydicom stops


def _check_config() -> None:
    if pydicom_config.datetime_conversion or pydicom_config.use_DS_numpy or pydicom_config.use_IS_numpy:
        raise Unsupported("pydicom is configured to convert values differently")
    if pydicom_config.use_DS_decimal or not pydicom_config.replace_un_with_known_vr:
        raise Unsupported("pydicom is configured to convert values differently")


def _ascii(raw: bytes) -> str:
    """Decode a value of a VR that pydicom does not decode in the dataset's character set."""
    return _text(raw, None)


def _text(raw: bytes, codec: str | None) -> str:
    """Decode a text VR value (LO, SH, UC, LT, ST, UT, PN) in the dataset's character set (None: ASCII only)."""
    if raw.isascii() and b"\x1b" not in raw:
        return raw.decode("ascii")
    if codec is None or b"\x1b" in raw:
        raise Unsupported("text in a character set this reader does not decode")
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:
        raise Unsupported("text that does not decode in its character set") from None


def _one_or_many(items: list[Any]) -> Any:
    return items[0] if len(items) == 1 else items


def _string(raw: bytes, _codec: str | None) -> Any:
    return _one_or_many(_ascii(raw).rstrip(" \x00").split("\\"))


def _multi_text(raw: bytes, codec: str | None) -> Any:
    return _one_or_many([v.rstrip("\x00 ") for v in _text(raw, codec).split("\\")])


def _single_text(raw: bytes, codec: str | None) -> Any:
    return _text(raw, codec).rstrip("\x00 ")


def _ui(raw: bytes, _codec: str | None) -> Any:
    return _one_or_many(_ascii(raw).rstrip("\x00 ").split("\\"))


def _pn(raw: bytes, codec: str | None) -> Any:
    return _one_or_many(_text(raw.rstrip(b"\x00 "), codec).split("\\"))


def _ae(raw: bytes, _codec: str | None) -> Any:
    return _one_or_many([v.strip() for v in _ascii(raw).split("\\")])


def _ur(raw: bytes, _codec: str | None) -> Any:
    return _ascii(raw).rstrip()


def _decimal_or_integer(vr: str, raw: bytes, _codec: str | None) -> Any:
    text = _ascii(raw)
    items = (text.strip() if vr == "DS" else text).rstrip(" \x00").split("\\")
    if items == [""]:
        return ""
    try:
        numbers = [float(v) if vr == "DS" else int(v) for v in items]
    except ValueError:
        raise Unsupported(f"{vr} value {text!r} is not plain") from None
    if vr == "DS" and not all(math.isfinite(n) for n in numbers):
        raise Unsupported("DS value is not finite")
    return _one_or_many(numbers)


def _binary_number(vr: str, raw: bytes, _codec: str | None) -> Any:
    code = _NUMBER_FORMATS[vr]
    size = struct.calcsize("<" + code)
    if len(raw) % size:
        raise Unsupported(f"{vr} value of {len(raw)} bytes")
    if not raw:
        return ""
    numbers = list(struct.unpack(f"<{len(raw) // size}{code}", raw))
    if code in "fd" and not all(math.isfinite(n) for n in numbers):
        raise Unsupported("floating point value is not finite")
    return _one_or_many(numbers)


def _at(raw: bytes, _codec: str | None) -> Any:
    if len(raw) % 4:
        raise Unsupported("AT value length is not a multiple of 4")
    pairs = struct.unpack(f"<{len(raw) // 2}H", raw)
    return _one_or_many([pairs[i] << 16 | pairs[i + 1] for i in range(0, len(pairs), 2)]) if raw else ""


def _binary(raw: bytes, _codec: str | None) -> Any:
    return raw


# One converter per VR, looked up once per element (a chain of `vr in ...` tests cost more than most values).
_CONVERTERS: dict[str, Callable[[bytes, str | None], Any]] = {
    **dict.fromkeys(_STRING_VRS, _string),
    **dict.fromkeys(_TEXT_VRS, _multi_text),
    **dict.fromkeys(_SINGLE_TEXT_VRS, _single_text),
    "UI": _ui,
    "PN": _pn,
    "AE": _ae,
    "UR": _ur,
    **{vr: functools.partial(_decimal_or_integer, vr) for vr in ("DS", "IS")},
    **{vr: functools.partial(_binary_number, vr) for vr in _NUMBER_FORMATS},
    "AT": _at,
    **dict.fromkeys(_BINARY_VRS, _binary),
}


def _convert(vr: str, raw: bytes, codec: str | None) -> Any:
    """Return the value as pydicom's Dataset.get gives it (lists for multiple values), "" when empty.

    `codec` decodes text VRs: the dataset's Specific Character Set, None when this reader does not handle it.
    """
    converter = _CONVERTERS.get(vr)
    if converter is None:
        raise Unsupported(f"VR {vr}")
    return converter(raw, codec)


def _is_empty(value: Any) -> bool:
    return isinstance(value, str | bytes) and not value


class _Reader:
    """Walks the elements of one dataset encoding; one instance per header."""

    def __init__(
        self,
        data: bytes,
        complete: bool,
        implicit: bool,
        wanted: dict[int, str],
        bulk_base: str | None,
        bulk_threshold: int,
    ) -> None:
        self.data = data
        self.complete = complete
        self.implicit = implicit
        self.wanted = wanted
        self.bulk_base = bulk_base  # None: no JSON, only the wanted values
        self.inline_limit = (bulk_threshold // 4) * 3  # pydicom's rule for InlineBinary vs. BulkDataURI
        self.values: dict[str, Any] = {}
        self.pixel_data_at: int | None = None
        self.codec: str | None = _CODECS[""]

    def _need(self, end: int) -> None:
        if end > len(self.data):
            raise NeedMore(f"header continues past byte {len(self.data)}")

    def _implicit_vr(self, tag: int, top: bool, pixel_representation: int | None) -> str:
        if tag >> 16 & 1:
            raise Unsupported("private tag in implicit VR")
        if tag & 0xFFFF == 0:
            return "UL"
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            raise Unsupported(f"tag {tag:08X} is not in the dictionary") from None
        if vr == "US or SS" and top and tag in _AMBIGUOUS_US_SS_TAGS and pixel_representation is not None:
            return "US" if pixel_representation == 0 else "SS"
        if vr not in _KNOWN_VRS:
            raise Unsupported(f"ambiguous VR {vr} of {tag:08X}")
        return vr

    def dataset(self, pos: int, end: int | None, top: bool) -> tuple[dict[str, Any], int]:
        """Read elements from `pos` to `end` (None: to an item delimiter, or at top level to pixel data)."""
        data = self.data
        out: dict[str, Any] = {}
        json = self.bulk_base is not None
        pixel_representation: int | None = None
        size = len(data)
        unpack_header, unpack_length = _ELEMENT_HEADER.unpack_from, _LONG_LENGTH.unpack_from
        vr_names, long_vrs, implicit, memo = _VR_NAMES, _LONG_VRS, self.implicit, _MEMO
        while end is None or pos < end:
            if top and end is None and pos == size and self.complete:
                break  # a dataset without pixel data: its end is the object's end
            if pos + 8 > size:
                raise NeedMore(f"header continues past byte {size}")
            group, element, length = unpack_header(data, pos)
            tag = group << 16 | element
            if tag == _ITEM_END and not top:
                return out, pos + 8
            if top and tag in PIXEL_DATA_TAGS:
                self.pixel_data_at = pos
                break
            if group == 0xFFFE or group == 0x0002:
                raise Unsupported(f"unexpected tag {tag:08X}")
            if implicit:
                vr = self._implicit_vr(tag, top, pixel_representation)
                value_at = pos + 8
            else:
                explicit_vr = vr_names.get(data[pos + 4 : pos + 6])
                if explicit_vr is None:
                    raise Unsupported(f"VR {data[pos + 4 : pos + 6]!r} of {tag:08X}")
                vr = explicit_vr
                if vr in long_vrs:
                    if pos + 12 > size:
                        raise NeedMore(f"header continues past byte {size}")
                    (length,) = unpack_length(data, pos + 8)
                    value_at = pos + 12
                else:
                    length = length >> 16
                    value_at = pos + 8
            if not top and (tag == _SPECIFIC_CHARACTER_SET or tag in _AMBIGUOUS_US_SS_TAGS):
                raise Unsupported("character set or pixel value element inside a sequence")
            if tag in _LUT_DESCRIPTOR_TAGS:
                raise Unsupported("LUT descriptor")
            if vr == "SQ":
                items, pos = self._sequence(value_at, length)
                if json:
                    out[_tag_key(tag)] = {"vr": "SQ", "Value": items}
                continue
            if length == _UNDEFINED:
                raise Unsupported(f"undefined length {vr} element {tag:08X}")
            pos = value_at + length
            if pos > size:
                raise NeedMore(f"header continues past byte {size}")
            keyword = self.wanted.get(tag) if top else None
            if not json and keyword is None and tag not in _READ_ALWAYS:
                continue
            raw = data[value_at:pos]
            as_json: dict[str, Any] | None
            if not json or length > _MEMO_MAX_VALUE or vr in _BINARY_VRS:
                value = _convert(vr, raw, self.codec)
                as_json = self._json(tag, vr, value) if json else None
            else:
                memo_key = (vr, raw, self.codec)
                known = memo.get(memo_key)
                if known is None:
                    value = _convert(vr, raw, self.codec)
                    known = (value, _value_json(vr, value))
                    if len(memo) >= _MEMO_ENTRIES:
                        memo.clear()
                    memo[memo_key] = known
                value, as_json = known
            if tag == _SPECIFIC_CHARACTER_SET:
                self.codec = _CODECS.get(value) if isinstance(value, str) else None
            if tag == _PIXEL_REPRESENTATION and isinstance(value, int):
                pixel_representation = value
            if keyword is not None:
                self.values[keyword] = value
            if as_json is not None:
                out[_tag_key(tag)] = as_json
        if end is not None and pos != end:
            raise Unsupported("an element runs past the end of its item")
        return out, pos

    def _sequence(self, pos: int, length: int) -> tuple[list[dict[str, Any]], int]:
        data = self.data
        end = None if length == _UNDEFINED else pos + length
        items: list[dict[str, Any]] = []
        while end is None or pos < end:
            self._need(pos + 8)
            group, element, item_length = struct.unpack_from("<HHL", data, pos)
            tag = group << 16 | element
            if tag == _SEQUENCE_END and end is None:
                return items, pos + 8
            if tag != _ITEM:
                raise Unsupported(f"unexpected tag {tag:08X} in a sequence")
            item_end = None if item_length == _UNDEFINED else pos + 8 + item_length
            item, pos = self.dataset(pos + 8, item_end, top=False)
            items.append(item)
        if end is not None and pos != end:
            raise Unsupported("an item runs past the end of its sequence")
        return items, pos

    def _json(self, tag: int, vr: str, value: Any) -> dict[str, Any]:
        if vr in _BINARY_VRS and not _is_empty(value):
            if len(value) > self.inline_limit:
                return {"vr": vr, "BulkDataURI": f"{self.bulk_base}/bulkdata/{tag:08X}"}
            return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}
        return _value_json(vr, value)


def _value_json(vr: str, value: Any) -> dict[str, Any]:
    """The DICOM JSON element of a value of a VR other than the binary ones (it depends on nothing else)."""
    element: dict[str, Any] = {"vr": vr}
    if _is_empty(value):
        return element
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        names: list[dict[str, str]] = []
        for name in values:
            groups = name.split("=")
            components = {"Alphabetic": groups[0]}
            if len(groups) > 1:
                components["Ideographic"] = groups[1]
            if len(groups) > 2:
                components["Phonetic"] = groups[2]
            names.append(components)
        element["Value"] = names
    elif vr == "AT":
        element["Value"] = [format(v, "08X") for v in values]
    else:
        element["Value"] = list(values)
    return element


@functools.lru_cache(maxsize=4096)
def _tag_key(tag: int) -> str:
    """A tag as DICOM JSON names it (formatting it was a measurable share of building the JSON)."""
    return f"{tag:08X}"


def _file_meta(data: bytes) -> tuple[dict[int, str], int]:
    """Return the UI values of the file meta group and the offset where the dataset starts."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise Unsupported("no Part 10 preamble")
    pos = 132
    meta: dict[int, str] = {}
    while True:
        if pos + 8 > len(data):
            raise NeedMore("file meta continues")
        group, element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            return meta, pos
        vr = data[pos + 4 : pos + 6].decode("latin-1")
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                raise NeedMore("file meta continues")
            (length,) = struct.unpack_from("<L", data, pos + 8)
            value_at = pos + 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            value_at = pos + 8
        if vr not in _KNOWN_VRS or length == _UNDEFINED:
            raise Unsupported(f"file meta element {group:04X}{element:04X} with VR {vr!r}")
        pos = value_at + length
        if pos > len(data):
            raise NeedMore("file meta continues")
        if vr == "UI":
            meta[group << 16 | element] = _ascii(data[value_at:pos]).rstrip("\x00 ")


@functools.lru_cache(maxsize=256)
def _explicit_little_endian(transfer_syntax: str) -> bool:
    """True for an explicit VR little endian syntax this reader reads (remembered: a pydicom UID and its
    validation cost more than the rest of the file meta)."""
    uid = UID(transfer_syntax)
    try:
        return bool(uid.is_transfer_syntax and not uid.is_implicit_VR and uid.is_little_endian and not uid.is_deflated)
    except ValueError:  # a private UID pydicom knows nothing about
        return False


def parse(
    data: bytes,
    wanted: dict[int, str],
    complete: bool,
    bulk_base: str | None = None,
    bulk_threshold: int = 1024,
) -> FastHeader:
    """Read a Part 10 header from the start of `data` (`complete`: data is the whole object).

    `wanted` maps top-level tags to the keywords their values are returned under. With `bulk_base`
    the DICOM JSON is built too (binary values above `bulk_threshold` get `{bulk_base}/bulkdata/{tag}`).
    Raises NeedMore when `data` ends inside the header, Unsupported for anything pydicom must read.
    """
    _check_config()
    meta, start = _file_meta(data)
    transfer_syntax = meta.get(0x00020010, "")
    if transfer_syntax == _IMPLICIT_VR_LITTLE_ENDIAN:
        implicit = True
    elif _explicit_little_endian(transfer_syntax):
        implicit = False
    else:
        raise Unsupported(f"transfer syntax {transfer_syntax!r}")
    reader = _Reader(data, complete, implicit, wanted, bulk_base, bulk_threshold)
    out, _ = reader.dataset(start, None, top=True)
    return FastHeader(
        transfer_syntax_uid=transfer_syntax,
        implicit_vr=implicit,
        meta=meta,
        values=reader.values,
        json=out if bulk_base is not None else None,
        pixel_data_at=reader.pixel_data_at,
    )
