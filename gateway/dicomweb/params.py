"""QIDO-RS query parameters (PS3.18 8.3.4): attribute matching, includefield, fuzzymatching, limit and offset.

Everything a client may put in the query string is checked here; anything unknown or malformed raises
InvalidQuery naming the parameter (HTTP 400 with problem+json at the edge).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.dicom.attributes import MATCHING_KEYS, QueryLevel, tag_of
from gateway.errors import InvalidQuery
from gateway.index.queries import Match, Query, Universal, parse_matcher

# PS3.18 8.3.4.4 lets the origin server cap a page: no response carries more results than this, and
# a client asking for more (or for no limit) gets this many plus the "additional results" Warning.
MAX_RESULTS = 10000

# PS3.18 8.3.4.5/8.3.4.6: features we do not perform are reported, not refused.
EMPTY_VALUE_WARNING = "The emptyvaluematching parameter is not supported. Empty Value Matching has not been performed."
MULTIPLE_VALUE_WARNING = (
    "The multiplevaluematching parameter is not supported. Multiple Value Matching has not been performed."
)

# Parameters read elsewhere: `accept` (PS3.18 8.3.3.1, media type negotiation in qido.py) and `charset`
# (8.3.3.2; responses are always UTF-8, the only character set of application/dicom+json).
_PASSED_ON = frozenset({"accept", "charset"})
_SINGLE = frozenset({"limit", "offset", "fuzzymatching", "emptyvaluematching", "multiplevaluematching"})
# Attributes whose values form a list: UIDs (PS3.18 8.3.4.1 uid-list-match: comma-separated or repeated;
# the C-FIND backslash is taken too) and ModalitiesInStudy (a study matches when it has any of them).
_LIST_VRS = frozenset({"UI"})
_LIST_TAGS = frozenset({"00080061"})


@dataclass(frozen=True)
class QidoParams:
    """A parsed QIDO-RS request: the query, the attributes asked back, and Warning texts to send."""

    query: Query
    includefields: frozenset[str]  # tags asked for by includefield or Universal Matching (PS3.18 8.3.4.3)
    include_all: bool  # includefield=all
    warnings: tuple[str, ...]

    @property
    def matched(self) -> frozenset[str]:
        """Tags used as matching keys: their values are returned too (PS3.18 10.6.3.3)."""
        return frozenset(match.tag for match in self.query.matches)


def _uint(name: str, value: str) -> int:
    if not value.isdigit() or not value.isascii():
        raise InvalidQuery(name, f"{value[:40]!r} is not an unsigned integer")
    return int(value)


def _bool(name: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise InvalidQuery(name, f"{value[:40]!r} is neither true nor false")
    return value.lower() == "true"


def _includefields(values: list[str]) -> tuple[frozenset[str], bool]:
    tags: set[str] = set()
    include_all = False
    for value in values:
        for item in (part.strip() for part in value.split(",")):
            if item == "all":
                include_all = True
                continue
            # A sequence path (00400275.00401001) asks for its top-level sequence: that is what we return.
            tag = tag_of(item.split(".", 1)[0]) if item else None
            if tag is None:
                raise InvalidQuery("includefield", f"{item[:64]!r} is not a DICOM keyword or tag")
            tags.add(tag)
    return frozenset(tags), include_all


def _split(value: str) -> list[str]:
    return value.replace("\\", ",").split(",")


def _match(name: str, values: list[str], level: QueryLevel) -> Match | str:
    """Return the Match for one attribute parameter, or its tag when it only asks the attribute back."""
    if "." in name:
        raise InvalidQuery(name, "sequence matching is not supported")
    tag = tag_of(name)
    if tag is None:
        raise InvalidQuery(name, "unknown query parameter: neither a QIDO-RS parameter nor a DICOM keyword or tag")
    key = MATCHING_KEYS.get(tag)
    if all(v == "" for v in values) or (
        all(v.strip() == "*" for v in values) and (key is None or key.level.depth > level.depth)
    ):
        return tag  # PS3.4 C.2.2.2.3 Universal Matching on any attribute = asking for it back
    if key is None:
        raise InvalidQuery(name, "not a supported matching key (docs/conformance.md lists them)")
    if key.level.depth > level.depth:
        raise InvalidQuery(
            name, f"{key.keyword} is a {key.level.lower()}-level key, not usable in a {level.lower()} search"
        )
    if key.vr in _LIST_VRS or tag in _LIST_TAGS:
        values = [item for value in values for item in _split(value)]
    elif len(values) > 1:
        raise InvalidQuery(name, "given more than once")
    try:
        return Match(tag, parse_matcher(values, key.vr))
    except ValueError as exc:
        raise InvalidQuery(name, str(exc)) from None


def parse_qido_params(items: Iterable[tuple[str, str]], level: QueryLevel) -> QidoParams:
    """Parse the query string of a QIDO-RS search at `level` (its (name, value) pairs, in order).

    Raises InvalidQuery naming the first parameter that is unknown, repeated where it may not be, or malformed.
    """
    grouped: dict[str, list[str]] = {}
    for name, value in items:
        grouped.setdefault(name, []).append(value)
    for name in _SINGLE & grouped.keys():
        if len(grouped[name]) > 1:
            raise InvalidQuery(name, "given more than once")
    single = {name: grouped[name][0] for name in _SINGLE & grouped.keys()}

    limit = min(_uint("limit", single["limit"]), MAX_RESULTS) if "limit" in single else MAX_RESULTS
    offset = _uint("offset", single["offset"]) if "offset" in single else 0
    fuzzy = _bool("fuzzymatching", single["fuzzymatching"]) if "fuzzymatching" in single else False
    warnings = []
    if "emptyvaluematching" in single and _bool("emptyvaluematching", single["emptyvaluematching"]):
        warnings.append(EMPTY_VALUE_WARNING)
    if "multiplevaluematching" in single and _bool("multiplevaluematching", single["multiplevaluematching"]):
        warnings.append(MULTIPLE_VALUE_WARNING)
    includefields, include_all = _includefields(grouped.get("includefield", []))

    matches: list[Match] = []
    returned = set(includefields)
    for name, values in grouped.items():
        if name in _SINGLE or name in _PASSED_ON or name == "includefield":
            continue
        found = _match(name, values, level)
        if isinstance(found, Match):
            matches.append(found)
            if isinstance(found.matcher, Universal):  # "*" matches everything: it only asks the attribute back
                returned.add(found.tag)
        else:
            returned.add(found)
    query = Query(level, tuple(matches), fuzzy=fuzzy, limit=limit, offset=offset)
    return QidoParams(query, frozenset(returned), include_all, tuple(warnings))
