"""PS3.18 Annex F DICOM JSON of a header: PN as objects, large binary values as BulkDataURI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

log = structlog.get_logger(__name__)

# PS3.18 F.2.7: binary values at or above this size are referenced, not inlined.
BULK_DATA_THRESHOLD = 1024


def instance_base_path(study: str, series: str, sop: str) -> str:
    """Return the DICOMweb path of an instance, relative to the service root (`/dicomweb`)."""
    return f"/dicomweb/studies/{study}/series/{series}/instances/{sop}"


def dataset_to_json(ds: Dataset, bulk_base: str, threshold: int = BULK_DATA_THRESHOLD) -> dict[str, Any]:
    """Return the DICOM JSON of `ds`; binary values of `threshold` bytes or more get a BulkDataURI.

    A DS or IS value that is not a number (a modality writing "1,5", say) is kept as the JSON string it
    was sent as, which the JSON model allows for these VRs (PS3.18 F.2.3, CP 1861), instead of failing
    the whole instance: the rest of its header stays searchable and viewable.
    """

    def bulk_uri(element: DataElement) -> str:
        return f"{bulk_base}/bulkdata/{element.tag:08X}"

    try:
        result: dict[str, Any] = ds.to_json_dict(bulk_data_threshold=threshold, bulk_data_element_handler=bulk_uri)
        return result
    except (ValueError, TypeError):
        return _tolerant_json(ds, threshold, bulk_uri)


def _tolerant_json(ds: Dataset, threshold: int, bulk_uri: Callable[[DataElement], str]) -> dict[str, Any]:
    """Element by element, numbers that do not parse as strings; recurses into sequence items."""
    result: dict[str, Any] = {}
    for tag in ds.keys():
        key = f"{int(tag):08X}"
        raw = ds.get_item(tag)
        vr = str(getattr(raw, "VR", "") or _dictionary_vr(int(tag)))
        if vr == "SQ":
            items = ds[tag].value or []
            result[key] = {"vr": "SQ", "Value": [_tolerant_json(item, threshold, bulk_uri) for item in items]}
            continue
        try:
            result[key] = ds[tag].to_json_dict(bulk_data_element_handler=bulk_uri, bulk_data_threshold=threshold)
        except (ValueError, TypeError):
            if vr not in _NUMBER_STRING_VRS or raw is None:
                raise
            result[key] = _as_strings(vr, raw.value)
            log.warning("dicom.json.number_kept_as_text", tag=key, vr=vr, reason="not a number")
    return result


def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""


_NUMBER_STRING_VRS = frozenset({"DS", "IS"})


def _as_strings(vr: str, value: object) -> dict[str, Any]:
    text = value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value or "")
    strings = [item.strip(" \x00") for item in text.split("\\")]
    if not any(strings):
        return {"vr": vr}
    return {"vr": vr, "Value": [item or None for item in strings]}
