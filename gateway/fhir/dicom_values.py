"""Reading values out of DICOM JSON (PS3.18 Annex F) into FHIR datatypes: names, codes, dates and times."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any

DicomJson = dict[str, Any]

# PS3.16 Table 8-1 coding scheme designators with their FHIR system URIs (FHIR R4 "Using Codes": DICOM, SNOMED CT,
# LOINC, UCUM, RadLex); codes of other, local schemes keep code and meaning but no system.
CODING_SYSTEMS: dict[str, str] = {
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "SCT": "http://snomed.info/sct",
    "SRT": "http://snomed.info/srt",
    "LN": "http://loinc.org",
    "UCUM": "http://unitsofmeasure.org",
    "RADLEX": "http://radlex.org",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10P": "http://www.icd10data.com/icd10pcs",
}

_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
# PS3.5 6.2 TM: HH, HHMM, HHMMSS or HHMMSS.F{1,6}.
_TM = re.compile(r"^(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?)?$")
# PS3.3 C.12.1.1.8: TimezoneOffsetFromUTC is "&ZZXX", e.g. +0100, -0500.
_TZ = re.compile(r"^([+-])(\d{2})(\d{2})$")


def values(attrs: DicomJson, tag: str) -> list[Any]:
    """Return the values of `tag` ([] when absent or empty)."""
    element = attrs.get(tag)
    if not isinstance(element, dict):
        return []
    found = element.get("Value")
    return list(found) if isinstance(found, list) else []


def text(attrs: DicomJson, tag: str) -> str | None:
    """Return the first value of `tag` as trimmed text, or None when absent or blank."""
    found = values(attrs, tag)
    if not found or found[0] is None or isinstance(found[0], dict):
        return None
    value = str(found[0]).strip()
    return value or None


def integer(attrs: DicomJson, tag: str) -> int | None:
    """Return the first value of `tag` as an int (IS/US/UL), or None when absent or malformed."""
    found = values(attrs, tag)
    if not found:
        return None
    try:
        return int(float(str(found[0]).strip()))
    except ValueError:
        return None  # strict when we write, tolerant when we read


def items(attrs: DicomJson, tag: str) -> list[DicomJson]:
    """Return the items of a sequence `tag`."""
    return [item for item in values(attrs, tag) if isinstance(item, dict)]


@dataclass(frozen=True)
class PersonName:
    """The component groups of one PN value (PS3.5 6.2.1.1): alphabetic, ideographic, phonetic."""

    alphabetic: str | None
    ideographic: str | None
    phonetic: str | None


def person_name(attrs: DicomJson, tag: str) -> PersonName | None:
    """Return the first PN value of `tag`, or None when it has no non-empty component group."""
    found = values(attrs, tag)
    if not found or not isinstance(found[0], dict):
        return None
    groups = [found[0].get(key) for key in ("Alphabetic", "Ideographic", "Phonetic")]
    cleaned = [g if isinstance(g, str) and g.strip("^ ") else None for g in groups]
    if not any(cleaned):
        return None
    return PersonName(*cleaned)


def _components(group: str) -> list[str]:
    parts = [part.strip() for part in group.split("^")]
    return (parts + [""] * 5)[:5]  # family, given, middle, prefix, suffix


def readable_group(group: str, family_first: bool = False) -> str:
    """Render one PN component group for people: "Dr. Anna Maria Smith", or family first for CJK groups."""
    family, given, middle, prefix, suffix = _components(group)
    order = [prefix, family, given, middle] if family_first else [prefix, given, middle, family]
    name = " ".join(part for part in order if part)
    return f"{name}, {suffix}" if suffix and name else (name or suffix)


def readable_name(name: PersonName) -> str:
    """Render a PN value in one line: the alphabetic group, with the ideographic one in parentheses."""
    # Ideographic and phonetic groups (PS3.5 H, I: Japanese, Korean) are written family name first.
    alphabetic = readable_group(name.alphabetic) if name.alphabetic else ""
    other = name.ideographic or name.phonetic
    native = readable_group(other, family_first=True) if other else ""
    if alphabetic and native:
        return f"{alphabetic} ({native})"
    return alphabetic or native


_REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"


def human_names(name: PersonName) -> list[dict[str, Any]]:
    """Return FHIR HumanName values, one per PN group; non-alphabetic groups carry EN-representation IDE/SYL."""
    result: list[dict[str, Any]] = []
    for group, representation in ((name.alphabetic, None), (name.ideographic, "IDE"), (name.phonetic, "SYL")):
        if not group:
            continue
        family, given, middle, prefix, suffix = _components(group)
        human: dict[str, Any] = {"use": "official", "text": readable_group(group, family_first=bool(representation))}
        if representation:
            human["extension"] = [{"url": _REPRESENTATION, "valueCode": representation}]
        if family:
            human["family"] = family
        given_names = [given, *middle.split()] if given else middle.split()
        if given_names:
            human["given"] = given_names
        if prefix:
            human["prefix"] = [prefix]
        if suffix:
            human["suffix"] = [suffix]
        result.append(human)
    return result


def coding(item: DicomJson) -> dict[str, Any] | None:
    """Return the FHIR Coding of one Code Sequence item (PS3.3 8.8), or None without a code value."""
    code = text(item, "00080100") or text(item, "00080119") or text(item, "00080120")
    if code is None:
        return None
    result: dict[str, Any] = {}
    system = CODING_SYSTEMS.get((text(item, "00080102") or "").upper())
    if system:
        result["system"] = system
    result["code"] = code
    meaning = text(item, "00080104")
    if meaning:
        result["display"] = meaning
    return result


def codeable_concepts(attrs: DicomJson, tag: str) -> list[dict[str, Any]]:
    """Return one CodeableConcept per item of the code sequence `tag`."""
    result = []
    for item in items(attrs, tag):
        found = coding(item)
        if found is not None:
            concept: dict[str, Any] = {"coding": [found]}
            if "display" in found:
                concept["text"] = found["display"]
            result.append(concept)
    return result


@dataclass(frozen=True)
class DateTimeValue:
    """A FHIR dateTime string and the UTC interval [low, high) it denotes at its precision."""

    text: str
    low: datetime
    high: datetime


def parse_offset(value: str | None) -> timezone | None:
    """Return the fixed offset of a TimezoneOffsetFromUTC value (+HHMM/-HHMM), or None when absent or malformed."""
    match = _TZ.match(value.strip()) if value else None
    if match is None:
        return None
    sign = -1 if match.group(1) == "-" else 1
    hours, minutes = int(match.group(2)), int(match.group(3))
    if hours > 14 or minutes > 59:
        return None
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def fhir_offset(offset: timedelta) -> str:
    """Format a UTC offset as FHIR wants it: Z or +hh:mm."""
    if offset == timedelta(0):
        return "Z"
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def date_time(da: str | None, tm: str | None, zone: tzinfo | None) -> DateTimeValue | None:
    """Combine DICOM DA and TM into a FHIR dateTime; None when the date is absent or malformed.

    FHIR R4 2.24.0.1 (dateTime): a time needs a time zone, so without `zone` (TimezoneOffsetFromUTC, or the
    configured zone) the value stays a date. The interval is that of the day, or the second (or fraction) given.
    """
    match = _DA.match(da.strip()) if da else None
    if match is None:
        return None
    try:
        day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
    time_match = _TM.match(tm.strip()) if tm else None
    if time_match is None or zone is None:
        start = datetime(day.year, day.month, day.day, tzinfo=zone or UTC)
        return DateTimeValue(day.isoformat(), start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC))
    hour, minute, second = (int(time_match.group(i) or 0) for i in (1, 2, 3))
    fraction = time_match.group(4) or ""
    if hour > 23 or minute > 59 or second > 59:
        return None
    micro = int(fraction.ljust(6, "0")) if fraction else 0
    local = datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=zone)
    offset = local.utcoffset() or timedelta(0)
    clock = f"{hour:02d}:{minute:02d}:{second:02d}" + (f".{fraction}" if fraction else "")
    step = timedelta(microseconds=10 ** (6 - len(fraction))) if fraction else timedelta(seconds=1)
    return DateTimeValue(
        f"{day.isoformat()}T{clock}{fhir_offset(offset)}", local.astimezone(UTC), (local + step).astimezone(UTC)
    )


def fhir_date(da: str | None) -> str | None:
    """Return a DICOM DA as a FHIR date (YYYY-MM-DD), or None when absent or malformed."""
    value = date_time(da, None, None)
    return value.text if value else None
