"""PS3.18 Annex F DICOM JSON of a header: PN as objects, large binary values as BulkDataURI."""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

# PS3.18 F.2.7: binary values at or above this size are referenced, not inlined.
BULK_DATA_THRESHOLD = 1024


def instance_base_path(study: str, series: str, sop: str) -> str:
    """Return the DICOMweb path of an instance, relative to the service root (`/dicomweb`)."""
    return f"/dicomweb/studies/{study}/series/{series}/instances/{sop}"


def dataset_to_json(ds: Dataset, bulk_base: str, threshold: int = BULK_DATA_THRESHOLD) -> dict[str, Any]:
    """Return the DICOM JSON of `ds`; binary values of `threshold` bytes or more get a BulkDataURI."""

    def bulk_uri(element: DataElement) -> str:
        return f"{bulk_base}/bulkdata/{element.tag:08X}"

    result: dict[str, Any] = ds.to_json_dict(bulk_data_threshold=threshold, bulk_data_element_handler=bulk_uri)
    return result
