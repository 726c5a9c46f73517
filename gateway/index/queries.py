"""Read side of the index: attribute matching (PS3.4 C.2.2.2) in SQL, shared by QIDO-RS and the C-FIND SCP.

A `Query` is neutral: a Query/Retrieve level and a list of (attribute, matcher). The edges build it from
their wire format (QIDO-RS query parameters, a C-FIND identifier); `parse_matcher` turns one attribute's
values into a matcher with the rules both share. Answers come from indexed columns, never from objects.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased, contains_eager, defer, sessionmaker

from gateway.dicom.attributes import MATCHING_KEYS, QueryLevel, normalize_person_name
from gateway.dicom.uids import is_valid_uid
from gateway.index.models import Instance, Patient, Series, Study


@dataclass(frozen=True)
class SingleValue:
    """PS3.4 C.2.2.2.1 Single Value Matching: equal values (PN: case-insensitive)."""

    value: str


@dataclass(frozen=True)
class Wildcard:
    """PS3.4 C.2.2.2.4 Wild Card Matching: `*` any run of characters, `?` any one character."""

    pattern: str


@dataclass(frozen=True)
class Range:
    """PS3.4 C.2.2.2.5 Range Matching of DA, TM and DT: inclusive bounds, either one may be open."""

    start: str | None
    end: str | None


@dataclass(frozen=True)
class ValueList:
    """PS3.4 C.2.2.2.2 List of UID Matching (also any-of for several ModalitiesInStudy values)."""

    values: tuple[str, ...]


@dataclass(frozen=True)
class Universal:
    """PS3.4 C.2.2.2.3 Universal Matching: every entity matches; the attribute is only returned."""


Matcher: TypeAlias = SingleValue | Wildcard | Range | ValueList | Universal


@dataclass(frozen=True)
class Match:
    """One key of a query: an attribute tag (8 hex digits, a key of MATCHING_KEYS) and how to match it."""

    tag: str
    matcher: Matcher


@dataclass(frozen=True)
class Query:
    """A search at one level; keys of that level or a higher one (relational, PS3.4 C.4.1.2.2.1).

    `fuzzy` is fuzzy semantic matching of person names (PS3.4 C.2.2.2.1, PS3.18 8.3.4.2): each name
    component given must be a prefix of some component of the stored name, case-insensitively.
    """

    level: QueryLevel
    matches: tuple[Match, ...] = ()
    fuzzy: bool = False
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True)
class ResultRow:
    """One match: its patient and study, plus its series (SERIES, IMAGE) and instance (IMAGE)."""

    patient: Patient
    study: Study
    series: Series | None = None
    instance: Instance | None = None


StudyRow = ResultRow  # the name list_studies used before matching existed


@dataclass(frozen=True)
class SearchResult:
    """A page of matches and whether more matches exist beyond it (PS3.18 8.3.4.4)."""

    rows: list[ResultRow]
    more: bool


# PS3.4 C.2.2.2.4: the VRs on which "*" and "?" are wild cards.
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_INTEGER_VRS = frozenset({"IS", "US", "SS", "UL", "SL"})
_DA = r"\d{8}"
_TM = r"(?:[01]\d|2[0-3])(?:[0-5]\d(?:[0-5]\d(?:\.\d{1,6})?)?)?"
_DT = r"\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?(?:[+-]\d{4})?"
_SYNTAX = {"DA": re.compile(_DA), "TM": re.compile(_TM), "DT": re.compile(_DT)}
_RANGE = {vr: re.compile(f"(?P<start>{p})?-(?P<end>{p})?") for vr, p in (("DA", _DA), ("TM", _TM), ("DT", _DT))}


def _check_temporal(value: str, vr: str) -> str:
    if _SYNTAX[vr].fullmatch(value) is None:
        raise ValueError(f"{value!r} is not a {vr} value")
    if vr == "DA":
        try:
            datetime.strptime(value, "%Y%m%d")
        except ValueError:
            raise ValueError(f"{value!r} is not a calendar date") from None
    return value


def parse_matcher(values: Sequence[str], vr: str) -> Matcher:
    """Return the matcher for the value(s) given for one attribute of VR `vr` (PS3.4 C.2.2.2).

    Several values make a list (UIDs, or any-of); one value is universal (empty or "*"), a range
    (DA/TM/DT with "-"), a wildcard (string VRs with "*" or "?") or a single value.
    Raises ValueError saying what is wrong with the value.
    """
    values = [v.strip() for v in values]
    if all(v == "" for v in values):
        return Universal()
    if len(values) > 1:
        if any(v == "" or "*" in v or "?" in v for v in values):
            raise ValueError("a list of values may not hold empty values or wild cards")
        for v in values:
            parse_matcher([v], vr)  # each value is checked like a single one
        return ValueList(tuple(dict.fromkeys(values)))
    value = values[0]
    if value == "*":
        return Universal()  # PS3.4 C.2.2.2.4: "*" alone is Universal Matching (tolerated on every VR)
    if vr == "UI":
        if not is_valid_uid(value):
            raise ValueError(f"{value[:70]!r} is not a valid UID")
        return SingleValue(value)
    if vr in _SYNTAX:
        if vr != "DT" or _SYNTAX["DT"].fullmatch(value) is None:  # a DT with a "-" offset is one value
            if "-" in value:
                found = _RANGE[vr].fullmatch(value)
                if found is None or not (found["start"] or found["end"]):
                    raise ValueError(f"{value!r} is not a {vr} range (start-end, start- or -end)")
                start = _check_temporal(found["start"], vr) if found["start"] else None
                end = _check_temporal(found["end"], vr) if found["end"] else None
                return Range(start, end)
        return SingleValue(_check_temporal(value, vr))
    if vr in _INTEGER_VRS:
        try:
            return SingleValue(str(int(value)))
        except ValueError:
            raise ValueError(f"{value!r} is not an integer") from None
    if vr in WILDCARD_VRS and ("*" in value or "?" in value):
        return Wildcard(value)
    return SingleValue(value)


# The indexed column of every matching key; PN keys use their normalised upper-case column.
_COLUMNS: dict[str, InstrumentedAttribute[Any]] = {
    "00080020": Study.study_date,
    "00080030": Study.study_time,
    "00080050": Study.accession_number,
    "00080090": Study.referring_physician_name_upper,
    "00081030": Study.study_description,
    "00100010": Patient.patient_name_upper,
    "00100020": Patient.patient_id,
    "00100021": Patient.issuer_of_patient_id,
    "00100030": Patient.patient_birth_date,
    "00100040": Patient.patient_sex,
    "0020000D": Study.study_instance_uid,
    "00200010": Study.study_id,
    "00080060": Series.modality,
    "0008103E": Series.series_description,
    "00180015": Series.body_part_examined,
    "0020000E": Series.series_instance_uid,
    "00200011": Series.series_number,
    "00400244": Series.performed_procedure_step_start_date,
    "00400245": Series.performed_procedure_step_start_time,
    "00080016": Instance.sop_class_uid,
    "00080018": Instance.sop_instance_uid,
    "0008002A": Instance.acquisition_date_time,
    "00200013": Instance.instance_number,
    "00280008": Instance.number_of_frames,
    "00280010": Instance.rows,
    "00280011": Instance.columns,
}
MODALITIES_IN_STUDY = "00080061"
assert set(_COLUMNS) | {MODALITIES_IN_STUDY} == set(MATCHING_KEYS), "every matching key needs an indexed column"


def _wildcard(column: Any, pattern: str, dialect: str) -> ColumnElement[bool]:
    """`column` matches the DICOM wildcard `pattern`, case-sensitively, with SQL wild cards escaped."""
    if dialect == "sqlite":
        # SQLite's LIKE ignores ASCII case; GLOB does not, and its "*" and "?" are DICOM's. Only "[" is special.
        glob = pattern.replace("[", "[[]")
        return column.op("GLOB", is_comparison=True)(glob)  # type: ignore[no-any-return]
    escaped = "".join({"*": "%", "?": "_", "%": "\\%", "_": "\\_", "\\": "\\\\"}.get(c, c) for c in pattern)
    return column.like(escaped, escape="\\")  # type: ignore[no-any-return]


def _person_name(column: Any, matcher: SingleValue | Wildcard, fuzzy: bool, dialect: str) -> ColumnElement[bool]:
    value = normalize_person_name(matcher.value if isinstance(matcher, SingleValue) else matcher.pattern) or ""
    if fuzzy:
        # Fuzzy semantic matching (declared in docs/conformance.md): every component of the key is a prefix
        # of a component of the name, in any component group (family, given, middle, prefix, suffix).
        terms = [term for term in re.split(r"[\^= ]+", value) if term]
        return and_(
            true(),
            *(
                or_(*(_wildcard(column, f"{lead}{term}*", dialect) for lead in ("", "*^", "*=", "* ")))
                for term in terms
            ),
        )
    if "=" in value:  # the key names component groups: match them, from the first group on
        if isinstance(matcher, Wildcard):
            return _wildcard(column, value, dialect)
        return or_(column == value, _wildcard(column, f"{value}=*", dialect))
    # A key of one group matches any component group (alphabetic, ideographic or phonetic) of the name.
    first = column == value if isinstance(matcher, SingleValue) else _wildcard(column, value, dialect)
    others = (
        _wildcard(column, f"{lead}{value}{tail}", dialect) for lead, tail in (("", "=*"), ("*=", ""), ("*=", "=*"))
    )
    return or_(first, *others)


def _after(bound: str) -> str:
    # The smallest string above every value that starts with `bound`: "1015" covers 10:15:00-10:15:59.999.
    return bound[:-1] + chr(ord(bound[-1]) + 1)


def _value_condition(column: Any, vr: str, matcher: Matcher, fuzzy: bool, dialect: str) -> ColumnElement[bool]:
    if isinstance(matcher, Universal):
        return true()
    if vr == "PN" and isinstance(matcher, SingleValue | Wildcard):
        return _person_name(column, matcher, fuzzy, dialect)
    if isinstance(matcher, SingleValue):
        return column == (int(matcher.value) if vr in _INTEGER_VRS else matcher.value)  # type: ignore[no-any-return]
    if isinstance(matcher, Wildcard):
        return _wildcard(column, matcher.pattern, dialect)
    if isinstance(matcher, ValueList):
        if vr == "PN":
            return or_(*(_person_name(column, SingleValue(v), fuzzy, dialect) for v in matcher.values))
        values = [int(v) for v in matcher.values] if vr in _INTEGER_VRS else list(matcher.values)
        return column.in_(values)  # type: ignore[no-any-return]
    # Range: stored DA/TM/DT values compare as text; a DT offset in a bound is ignored (docs/conformance.md).
    start, end = (re.sub(r"[+-]\d{4}$", "", b) if vr == "DT" and b else b for b in (matcher.start, matcher.end))
    conditions = [column.is_not(None)]
    if start:
        conditions.append(column >= start)
    if end:
        conditions.append(column < _after(end))
    return and_(*conditions)


def _condition(match: Match, fuzzy: bool, dialect: str) -> ColumnElement[bool]:
    vr = MATCHING_KEYS[match.tag].vr
    if match.tag == MODALITIES_IN_STUDY:
        # A multi-valued attribute matches when any of its values does (PS3.4 C.2.2.3): here, any series' modality.
        other = aliased(Series)
        condition = _value_condition(other.modality, vr, match.matcher, fuzzy, dialect)
        return select(other.pk).where(other.study_pk == Study.pk, other.number_of_instances > 0, condition).exists()
    return _value_condition(_COLUMNS[match.tag], vr, match.matcher, fuzzy, dialect)


_STUDY_ORDER = (Study.study_date.desc().nulls_last(), Study.study_instance_uid)
_SERIES_ORDER = (*_STUDY_ORDER, Series.series_number.nulls_last(), Series.series_instance_uid)
_INSTANCE_ORDER = (*_SERIES_ORDER, Instance.instance_number.nulls_last(), Instance.sop_instance_uid)


def _base_statement(level: QueryLevel) -> Select[*tuple[Any, ...]]:
    """The part of a search at `level` that does not depend on its keys: entities, joins, order."""
    statement: Select[*tuple[Any, ...]]
    if level is QueryLevel.STUDY:
        statement = select(Study, Patient).where(Study.number_of_instances > 0).order_by(*_STUDY_ORDER)
    elif level is QueryLevel.SERIES:
        statement = (
            select(Series, Study, Patient)
            .join(Study, Series.study_pk == Study.pk)
            .where(Series.number_of_instances > 0)
            .order_by(*_SERIES_ORDER)
        )
    else:
        statement = (
            select(Instance, Series, Study, Patient)
            .join(Series, Instance.series_pk == Series.pk)
            .join(Study, Series.study_pk == Study.pk)
            .options(defer(Instance.frame_offsets))  # WADO's business, possibly large
            .order_by(*_INSTANCE_ORDER)
        )
    return statement.join(Patient, Study.patient_pk == Patient.pk).options(contains_eager(Study.patient))


# Built once: a Select is immutable (every .where() returns a copy), and building this part anew took about a
# fifth of a QIDO-RS search's time (profiled, bench issue #6).
_BASE_STATEMENTS = {level: _base_statement(level) for level in QueryLevel}


def _statement(query: Query, dialect: str) -> Select[*tuple[Any, ...]]:
    conditions = []
    for match in query.matches:
        key = MATCHING_KEYS.get(match.tag)
        if key is None or key.level.depth > query.level.depth:
            raise ValueError(f"{match.tag} is not a matching key at {query.level} level")
        conditions.append(_condition(match, query.fuzzy, dialect))
    statement = _BASE_STATEMENTS[query.level]
    return statement.where(*conditions) if conditions else statement


def search(sessions: sessionmaker[Session], query: Query) -> SearchResult:
    """Return the page of entities matching `query` in a stable order, and whether more exist.

    Raises ValueError when a key is unknown or below the query's level.
    """
    with sessions() as session:
        statement = _statement(query, session.get_bind().dialect.name)
        if query.offset:
            statement = statement.offset(query.offset)
        if query.limit is not None:
            statement = statement.limit(query.limit + 1)  # one more than asked tells whether more exist
        found = session.execute(statement).all()
    more = query.limit is not None and len(found) > query.limit
    rows = []
    for row in found[: query.limit] if query.limit is not None else found:
        if query.level is QueryLevel.STUDY:
            rows.append(ResultRow(patient=row[1], study=row[0]))
        elif query.level is QueryLevel.SERIES:
            rows.append(ResultRow(patient=row[2], study=row[1], series=row[0]))
        else:
            rows.append(ResultRow(patient=row[3], study=row[2], series=row[1], instance=row[0]))
    return SearchResult(rows, more)


def list_studies(sessions: sessionmaker[Session], limit: int | None = None, offset: int = 0) -> list[ResultRow]:
    """Return studies with at least one instance, in a stable order, paged by limit/offset."""
    return search(sessions, Query(QueryLevel.STUDY, limit=limit, offset=offset)).rows


def count_studies(sessions: sessionmaker[Session]) -> int:
    """Return how many studies have at least one instance."""
    with sessions() as session:
        return int(session.execute(select(func.count(Study.pk)).where(Study.number_of_instances > 0)).scalar_one())


def instance_counts(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """Return totals of studies, series and instances (for /metrics)."""
    with sessions() as session:
        return {
            "studies": session.execute(select(func.count(Study.pk))).scalar_one(),
            "series": session.execute(select(func.count(Series.pk))).scalar_one(),
            "instances": session.execute(select(func.count(Instance.pk))).scalar_one(),
        }
