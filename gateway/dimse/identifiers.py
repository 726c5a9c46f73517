"""C-FIND, C-MOVE and C-GET identifiers to and from the index's neutral query (PS3.4 C.4.1 to C.4.3).

`parse_find` turns a C-FIND identifier into a `Query` of gateway/index/queries.py (the matching code
QIDO-RS uses); `find_responses` turns the index's answers back into response identifiers, in the
query's Specific Character Set when it can carry every value (else UTF-8, ISO_IR 192).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from pydicom.charset import python_encoding
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicom.attributes import MATCHING_KEYS, QueryLevel
from gateway.errors import InvalidQuery
from gateway.index.queries import Match, Query, ResultRow, SingleValue, Universal, Wildcard, parse_matcher, search

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
_DEPTH = {level: depth for depth, level in enumerate(LEVELS)}
_SEARCH_LEVEL = {
    "PATIENT": QueryLevel.STUDY,  # patients are found through their studies, then grouped
    "STUDY": QueryLevel.STUDY,
    "SERIES": QueryLevel.SERIES,
    "IMAGE": QueryLevel.IMAGE,
}
# PS3.4 C.6.1.1.2: the patient-level keys of the Patient Root model (study-level keys in the Study Root model).
PATIENT_TAGS = frozenset({"00100010", "00100020", "00100021", "00100030", "00100040"})
# PS3.4 C.6.1.1 / C.6.2.1: the Unique Key of each level.
UNIQUE_KEYS = {"PATIENT": "00100020", "STUDY": "0020000D", "SERIES": "0020000E", "IMAGE": "00080018"}
QUERY_RETRIEVE_LEVEL = 0x00080052
SPECIFIC_CHARACTER_SET = 0x00080005
MODALITIES_IN_STUDY = "00080061"
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "PN"})
_PAGE = 200


class InvalidIdentifier(InvalidQuery):
    """An identifier the SCP refuses (0xA900 at the edge), naming the offending element."""

    def __init__(self, tag: int, reason: str) -> None:
        super().__init__(keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})", reason)
        self.tag = tag


@dataclass(frozen=True)
class FindRequest:
    """A parsed C-FIND identifier: level, neutral query, the keys to return, and keys not matched on."""

    level: str
    query: Query
    requested: tuple[tuple[int, str], ...]  # (tag, VR) of every return key, in identifier order
    unmatched: tuple[str, ...]  # optional keys given a value we do not match on (PS3.4 C.4.1.1.4: FF01)
    charset: tuple[str, ...]  # Specific Character Set (0008,0005) of the identifier, empty = default


@dataclass(frozen=True)
class RetrieveRequest:
    """A parsed C-MOVE / C-GET identifier: its level and the unique keys as IMAGE-level matches."""

    level: str
    matches: tuple[Match, ...]


def _level(identifier: Dataset, patient_root: bool) -> str:
    value = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    allowed = LEVELS if patient_root else LEVELS[1:]
    if value not in allowed:
        model = "Patient Root" if patient_root else "Study Root"
        raise InvalidIdentifier(QUERY_RETRIEVE_LEVEL, f"{value[:16]!r} is not one of {'/'.join(allowed)} ({model})")
    return value


def _values(element: DataElement) -> list[str]:
    value = element.value
    if value is None or isinstance(value, bytes | bytearray):
        return [""]
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value] or [""]
    return [str(value)]


def _key_level(tag: str, patient_root: bool) -> str | None:
    if patient_root and tag in PATIENT_TAGS:
        return "PATIENT"
    key = MATCHING_KEYS.get(tag)
    return str(key.level) if key is not None else None


def parse_find(identifier: Dataset, patient_root: bool, relational: bool = False, fuzzy: bool = False) -> FindRequest:
    """Translate a C-FIND identifier into a neutral query (PS3.4 C.4.1.2); raise InvalidIdentifier.

    Keys below the query level may not carry a value; a key we cannot match on is returned but not
    matched (status FF01). Without relational queries negotiated, the search is hierarchical
    (PS3.4 C.4.1.3.1): every level above the query level needs its Unique Key as a single value.
    """
    level = _level(identifier, patient_root)
    depth = _DEPTH[level]
    matches: list[Match] = []
    requested: list[tuple[int, str]] = []
    unmatched: list[str] = []
    for element in identifier:
        tag = int(element.tag)
        if element.tag.group in (0x0000, 0x0002) or tag in (QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET):
            continue
        requested.append((tag, element.VR))
        values = [] if element.VR == "SQ" else _values(element)
        if element.tag.is_private or element.VR == "SQ" or all(v.strip() == "" for v in values):
            continue  # a return key only (Universal Matching, PS3.4 C.2.2.2.3)
        hex_tag = f"{tag:08X}"
        key_level = _key_level(hex_tag, patient_root)
        if key_level is None:
            unmatched.append(element.keyword or hex_tag)
            continue
        if _DEPTH[key_level] > depth:
            raise InvalidIdentifier(tag, f"a {key_level} key, not allowed at {level} level")
        vr = MATCHING_KEYS[hex_tag].vr
        if len(values) > 1 and vr != "UI" and hex_tag != MODALITIES_IN_STUDY:
            raise InvalidIdentifier(tag, "several values allowed only in a list of UIDs")
        try:
            matches.append(Match(hex_tag, parse_matcher(values, vr)))
        except ValueError as exc:
            raise InvalidIdentifier(tag, str(exc)) from None
    if not relational:
        for above in LEVELS[0 if patient_root else 1 : depth]:
            key = UNIQUE_KEYS[above]
            given = next((m.matcher for m in matches if m.tag == key), None)
            if not isinstance(given, SingleValue):
                raise InvalidIdentifier(int(key, 16), f"one value needed at {level} level (hierarchical query)")
    charset = identifier.get("SpecificCharacterSet") or ()
    charset = (charset,) if isinstance(charset, str) else tuple(str(c) for c in charset)
    query = Query(_SEARCH_LEVEL[level], tuple(matches), fuzzy=fuzzy)
    return FindRequest(level, query, tuple(requested), tuple(unmatched), charset)


def parse_retrieve(identifier: Dataset, patient_root: bool) -> RetrieveRequest:
    """Translate a C-MOVE / C-GET identifier (PS3.4 C.4.2.2.1, C.4.3.2.1); raise InvalidIdentifier.

    The Unique Key of the retrieve level is required (a single value or a list); keys of higher levels,
    when given, narrow the selection. Other keys are ignored.
    """
    level = _level(identifier, patient_root)
    matches: list[Match] = []
    for above in LEVELS[0 if patient_root else 1 : _DEPTH[level] + 1]:
        key = UNIQUE_KEYS[above]
        tag = int(key, 16)
        element = identifier.get(tag)
        values = _values(element) if element is not None else [""]
        try:
            matcher = parse_matcher(values, MATCHING_KEYS[key].vr)
        except ValueError as exc:
            raise InvalidIdentifier(tag, str(exc)) from None
        if isinstance(matcher, Wildcard):
            raise InvalidIdentifier(tag, "retrieve keys are values, not patterns")
        if isinstance(matcher, Universal):
            if above == level:
                raise InvalidIdentifier(tag, f"needed in a {level} level retrieve")
            continue
        matches.append(Match(key, matcher))
    return RetrieveRequest(level, tuple(matches))


def _can_encode(text: str, codecs: list[str]) -> bool:
    # ISO 2022 code extensions switch character sets within a value: each character needs one that has it.
    for char in text:
        for codec in codecs:
            try:
                char.encode(codec)
                break
            except (UnicodeError, LookupError):
                continue
        else:
            return False
    return True


def _charset(ds: Dataset, asked: tuple[str, ...]) -> tuple[str, ...]:
    """The Specific Character Set for a response: the query's when it can carry every value, else UTF-8."""
    texts: list[str] = []
    for element in ds:
        if element.VR in _TEXT_VRS and element.value not in (None, ""):
            values = element.value if isinstance(element.value, MultiValue | list) else [element.value]
            texts.extend(str(v) for v in values)
    terms = [term.strip() for term in asked] or [""]
    codecs = ["ascii" if term in ("", "ISO_IR 6", "ISO 2022 IR 6") else python_encoding.get(term, "") for term in terms]
    if all(codecs) and all(_can_encode(text, codecs) for text in texts):
        return asked
    return ("ISO_IR 192",)


def _sources(level: str, row: ResultRow) -> dict[str, Any]:
    """The stored DICOM JSON the response values come from, for one matched entity."""
    study_json: dict[str, Any] = dict(row.study.study_json or {})
    if level == "PATIENT":
        return {tag: value for tag, value in study_json.items() if tag.startswith("0010")}
    if level in ("SERIES", "IMAGE") and row.series is not None:
        study_json.update(row.series.series_json or {})
    if level == "IMAGE" and row.instance is not None:
        study_json.update(json.loads(row.instance.metadata_json))
    return study_json


def _computed(level: str, rows: list[ResultRow], ae_title: str) -> dict[int, tuple[str, Any]]:
    """Attributes the index computes rather than stores (PS3.4 C.3.2 to C.3.5 optional keys)."""
    row = rows[0]
    values: dict[int, tuple[str, Any]] = {
        QUERY_RETRIEVE_LEVEL: ("CS", level),
        0x00080054: ("AE", ae_title),  # RetrieveAETitle
        0x00080056: ("CS", "ONLINE"),  # InstanceAvailability
        0x00100020: ("LO", row.patient.patient_id),
    }
    if level == "PATIENT":
        values[0x00201200] = ("IS", len(rows))  # NumberOfPatientRelatedStudies
        values[0x00201202] = ("IS", sum(r.study.number_of_series for r in rows))
        values[0x00201204] = ("IS", sum(r.study.number_of_instances for r in rows))
        return values
    study = row.study
    values[0x0020000D] = ("UI", study.study_instance_uid)
    values[0x00080061] = ("CS", [m for m in study.modalities_in_study.split("\\") if m])  # ModalitiesInStudy
    values[0x00201206] = ("IS", study.number_of_series)  # NumberOfStudyRelatedSeries
    values[0x00201208] = ("IS", study.number_of_instances)  # NumberOfStudyRelatedInstances
    if row.series is not None:
        values[0x0020000E] = ("UI", row.series.series_instance_uid)
        values[0x00201209] = ("IS", row.series.number_of_instances)  # NumberOfSeriesRelatedInstances
    if row.instance is not None:
        values[0x00080016] = ("UI", row.instance.sop_class_uid)
        values[0x00080018] = ("UI", row.instance.sop_instance_uid)
    return values


def _response(request: FindRequest, rows: list[ResultRow], ae_title: str) -> Dataset:
    """One response identifier: every requested key (empty when unknown), plus the level's unique keys."""
    sources = _sources(request.level, rows[0])
    computed = _computed(request.level, rows, ae_title)
    wanted = dict(request.requested)
    for level in LEVELS[0 if request.level == "PATIENT" else 1 : _DEPTH[request.level] + 1]:
        wanted.setdefault(int(UNIQUE_KEYS[level], 16), MATCHING_KEYS[UNIQUE_KEYS[level]].vr)
    ds = Dataset()
    for tag, vr in wanted.items():
        stored = sources.get(f"{tag:08X}")
        element: DataElement | None = None
        if stored is not None and "BulkDataURI" not in json.dumps(stored):
            try:
                element = Dataset.from_json({f"{tag:08X}": stored})[tag]
            except Exception:  # tolerant when we read: a malformed stored value is returned empty
                element = None
        if element is None and tag in computed:
            element = DataElement(tag, computed[tag][0], computed[tag][1])
        ds.add(element if element is not None else DataElement(tag, vr, [] if vr == "SQ" else None))
    for tag in (QUERY_RETRIEVE_LEVEL, 0x00080054):
        ds.add(DataElement(tag, *computed[tag]))
    charset = _charset(ds, request.charset)
    if charset:
        ds.SpecificCharacterSet = list(charset) if len(charset) > 1 else charset[0]
    return ds


def find_responses(sessions: sessionmaker[Session], request: FindRequest, ae_title: str) -> Iterator[Dataset]:
    """The response identifiers of a C-FIND, read page by page; patients grouped from their studies."""
    if request.level == "PATIENT":
        patients: dict[int, list[ResultRow]] = {}
        for row in search(sessions, request.query).rows:
            patients.setdefault(row.patient.pk, []).append(row)
        for rows in patients.values():
            yield _response(request, rows, ae_title)
        return
    offset = 0
    while True:
        page = search(sessions, replace(request.query, limit=_PAGE, offset=offset))
        for row in page.rows:
            yield _response(request, [row], ae_title)
        if not page.more:
            return
        offset += _PAGE
