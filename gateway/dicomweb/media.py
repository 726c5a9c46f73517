"""DICOMweb media types and a response class that serializes DICOM JSON with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

DICOM_JSON = "application/dicom+json"


class DicomJSONResponse(Response):
    """A PS3.18 `application/dicom+json` response."""

    media_type = DICOM_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
