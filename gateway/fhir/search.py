"""FHIR search parameters (https://hl7.org/fhir/R4/search.html): parsing into criteria, and criteria into SQL."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select

from gateway.errors import InvalidQuery
from gateway.index.fhir_models import FhirResource, FhirSearchToken

DEFAULT_COUNT = 50
MAX_COUNT = 1000
IMAGING_STUDY_STATUSES = ("registered", "available", "cancelled", "entered-in-error", "unknown")
# search.html#prefix: `ap` (approximately) is not supported and rejected.
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
# Parameters whose values the router reads itself (format, paging) rather than matching on.
CONTROL_PARAMETERS = frozenset({"_count", "_offset", "_format", "_pretty"})


@dataclass(frozen=True)
class TokenCriterion:
    """Match a token parameter: any of `alternatives`, each (system or None = any, value or None = any)."""

    parameter: str
    alternatives: tuple[tuple[str | None, str | None], ...]


@dataclass(frozen=True)
class DateCriterion:
    """Match `started` (an interval) or `_lastUpdated` (an instant) against [low, high) with a prefix."""

    parameter: Literal["started", "_lastUpdated"]
    prefix: str
    low: datetime
    high: datetime


@dataclass(frozen=True)
class ValueCriterion:
    """Match a column (`status` or `_id`) against any of `values`."""

    parameter: Literal["status", "_id"]
    values: tuple[str, ...]


Criterion = TokenCriterion | DateCriterion | ValueCriterion
_Kind = Literal["token", "reference", "date", "status", "id"]

# Supported parameters per resource type: name (with modifier) -> (kind, token parameter stored in the index).
SEARCH_PARAMETERS: dict[str, dict[str, tuple[_Kind, str]]] = {
    "ImagingStudy": {
        "_id": ("id", "_id"),
        "_lastUpdated": ("date", "_lastUpdated"),
        "identifier": ("token", "identifier"),
        "patient": ("reference", "patient"),
        "subject": ("reference", "patient"),
        "patient:identifier": ("token", "subject-identifier"),
        "subject:identifier": ("token", "subject-identifier"),
        "started": ("date", "started"),
        "modality": ("token", "modality"),
        "status": ("status", "status"),
    },
    "Patient": {
        "_id": ("id", "_id"),
        "_lastUpdated": ("date", "_lastUpdated"),
        "identifier": ("token", "identifier"),
    },
}


@dataclass(frozen=True)
class SearchRequest:
    """A parsed search: criteria (all must hold), page size and offset."""

    criteria: tuple[Criterion, ...]
    count: int
    offset: int


def _split(value: str, separator: str) -> list[str]:
    # search.html#escaping: "\\," "\\|" and "\\$" are literal; resolve the separator's escape, keep the others.
    parts, current, index = [], "", 0
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value):
            following = value[index + 1]
            current += following if following == separator else char + following
            index += 2
            continue
        if char == separator:
            parts.append(current)
            current = ""
        else:
            current += char
        index += 1
    parts.append(current)
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _token(name: str, value: str) -> tuple[tuple[str | None, str | None], ...]:
    alternatives: list[tuple[str | None, str | None]] = []
    for part in _split(value, ","):
        pieces = [_unescape(piece) for piece in _split(part, "|")]
        if len(pieces) == 1 and pieces[0]:
            alternatives.append((None, pieces[0]))
        elif len(pieces) == 2 and (pieces[0] or pieces[1]):
            alternatives.append((pieces[0], pieces[1] or None))
        else:
            raise InvalidQuery(name, f"not a token ([system]|[code]): {part!r}")
    return tuple(alternatives)


def _reference(name: str, value: str) -> tuple[tuple[str | None, str | None], ...]:
    alternatives: list[tuple[str | None, str | None]] = []
    for part in _split(value, ","):
        # search.html#reference: [id], [type]/[id] or an absolute URL ending in [type]/[id].
        pieces = part.split("/")
        if len(pieces) >= 2 and pieces[-2] != "Patient":
            raise InvalidQuery(name, f"only Patient references are supported, not {pieces[-2]}")
        if not pieces[-1] or not re.match(r"^[A-Za-z0-9.-]{1,64}$", pieces[-1]):
            raise InvalidQuery(name, f"not a Patient reference: {part!r}")
        alternatives.append(("", pieces[-1]))
    return tuple(alternatives)


def parse_date(value: str, zone: tzinfo | None, name: str = "date") -> tuple[datetime, datetime]:
    """Return the UTC interval [low, high) of a FHIR date/dateTime at its precision.

    Without an offset the value is in `zone` (the server's, search.html#date), UTC when None.
    Raises InvalidQuery for anything that is not a FHIR date or dateTime.
    """
    match = _DATE.match(value.strip().replace(" ", "+"))  # an unencoded "+" arrives as a space
    if match is None:
        raise InvalidQuery(name, f"not a FHIR date or dateTime: {value!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    tz: tzinfo = zone or UTC
    if offset == "Z":
        tz = UTC
    elif offset:
        sign = -1 if offset[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        start = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0))
        start = start.replace(microsecond=int((fraction or "0")[:6].ljust(6, "0")), tzinfo=tz)
    except ValueError:
        raise InvalidQuery(name, f"not a valid date: {value!r}") from None
    if fraction:
        end = start + timedelta(microseconds=max(1, 10 ** (6 - min(len(fraction), 6))))
    elif second:
        end = start + timedelta(seconds=1)
    elif minute:
        end = start + timedelta(minutes=1)
    elif day:
        end = start + timedelta(days=1)
    elif month:
        end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
    else:
        end = start.replace(year=start.year + 1)
    return start.astimezone(UTC), end.astimezone(UTC)


def _date(name: str, value: str, zone: tzinfo | None) -> DateCriterion:
    prefix = "eq"
    if value[:2] in _PREFIXES or value[:2] == "ap":
        prefix, value = value[:2], value[2:]
    if prefix == "ap":
        raise InvalidQuery(name, "the prefix ap is not supported")
    low, high = parse_date(value, zone, name)
    parameter: Literal["started", "_lastUpdated"] = "started" if name == "started" else "_lastUpdated"
    return DateCriterion(parameter, prefix, low, high)


def _integer(name: str, value: str, maximum: int | None = None) -> int:
    if not value.isdigit():
        raise InvalidQuery(name, "must be a non-negative integer")
    number = int(value)
    return min(number, maximum) if maximum is not None else number


def parse_search(
    resource_type: str, params: Sequence[tuple[str, str]], zone: tzinfo | None, lenient: bool = False
) -> SearchRequest:
    """Parse query parameters into a SearchRequest for `resource_type`.

    Repeated parameters must all hold (AND); comma-separated values are alternatives (OR). Unknown parameters
    raise InvalidQuery unless `lenient` (Prefer: handling=lenient, search.html#errors). `_count` above
    MAX_COUNT is lowered to it. Raises InvalidQuery naming the parameter for malformed values.
    """
    supported = SEARCH_PARAMETERS[resource_type]
    criteria: list[Criterion] = []
    count, offset = DEFAULT_COUNT, 0
    for name, value in params:
        if name == "_count":
            count = _integer(name, value, MAX_COUNT)
            continue
        if name == "_offset":
            offset = _integer(name, value)
            continue
        if name in CONTROL_PARAMETERS:
            continue
        if name not in supported:
            if lenient:
                continue
            raise InvalidQuery(name, f"unknown or unsupported search parameter for {resource_type}")
        if not value:
            raise InvalidQuery(name, "empty value")
        kind, stored = supported[name]
        if kind == "token":
            criteria.append(TokenCriterion(stored, _token(name, value)))
        elif kind == "reference":
            criteria.append(TokenCriterion(stored, _reference(name, value)))
        elif kind == "date":
            criteria.append(_date(name, value, zone))
        elif kind == "status":
            statuses = tuple(_unescape(v) for v in _split(value, ","))
            unknown = [s for s in statuses if s not in IMAGING_STUDY_STATUSES]
            if unknown:
                raise InvalidQuery(name, f"unknown status {unknown[0]!r}; one of {', '.join(IMAGING_STUDY_STATUSES)}")
            criteria.append(ValueCriterion("status", statuses))
        else:
            criteria.append(ValueCriterion("_id", tuple(_unescape(v) for v in _split(value, ","))))
    return SearchRequest(tuple(criteria), count, offset)


def _interval(prefix: str, tl: Any, th: Any, sl: datetime, sh: datetime) -> ColumnElement[bool]:
    # search.html#prefix on ranges: target [tl, th) against the search value's range [sl, sh).
    eq = and_(tl >= sl, th <= sh)
    clauses: dict[str, ColumnElement[bool]] = {
        "eq": eq,
        "ne": not_(eq),
        "gt": th > sh,
        "lt": tl < sl,
        "ge": or_(th > sh, eq),
        "le": or_(tl < sl, eq),
        "sa": tl >= sh,
        "eb": th <= sl,
    }
    return clauses[prefix]


def _instant(prefix: str, t: Any, sl: datetime, sh: datetime) -> ColumnElement[bool]:
    # An instant (meta.lastUpdated) is its own range: t is inside [sl, sh), or above, or below it.
    eq = and_(t >= sl, t < sh)
    clauses: dict[str, ColumnElement[bool]] = {
        "eq": eq,
        "ne": not_(eq),
        "gt": t >= sh,
        "lt": t < sl,
        "ge": t >= sl,
        "le": t < sh,
        "sa": t >= sh,
        "eb": t < sl,
    }
    return clauses[prefix]


def clause(criterion: Criterion) -> ColumnElement[bool]:
    """Return the SQL condition on FhirResource for one criterion."""
    if isinstance(criterion, ValueCriterion):
        column = FhirResource.status if criterion.parameter == "status" else FhirResource.resource_id
        return column.in_(criterion.values)
    if isinstance(criterion, DateCriterion):
        if criterion.parameter == "_lastUpdated":
            return _instant(criterion.prefix, FhirResource.last_updated, criterion.low, criterion.high)
        return and_(
            FhirResource.started_low.is_not(None),
            _interval(
                criterion.prefix, FhirResource.started_low, FhirResource.started_high, criterion.low, criterion.high
            ),
        )
    options = []
    for system, value in criterion.alternatives:
        conditions = []
        if value is not None:
            conditions.append(FhirSearchToken.value == value)
        if system is not None:
            conditions.append(FhirSearchToken.system == system)
        options.append(and_(*conditions))
    return exists(
        select(FhirSearchToken.pk).where(
            FhirSearchToken.resource_pk == FhirResource.pk,
            FhirSearchToken.parameter == criterion.parameter,
            or_(*options),
        )
    )
