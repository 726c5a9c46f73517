"""Object keys: `{prefix}{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm` from validated UIDs."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.dicom.uids import validate_uid
from gateway.errors import InvalidUID


@dataclass(frozen=True)
class InstanceKey:
    """The three UIDs that place an instance in the object store."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str

    def key(self, prefix: str = "") -> str:
        """Return the object key under `prefix`."""
        return f"{prefix}{self.study_instance_uid}/{self.series_instance_uid}/{self.sop_instance_uid}.dcm"


def instance_key(study: object, series: object, sop: object) -> InstanceKey:
    """Validate the three UIDs and return their key; raise InvalidUID naming the bad one."""
    return InstanceKey(
        validate_uid(study, "StudyInstanceUID"),
        validate_uid(series, "SeriesInstanceUID"),
        validate_uid(sop, "SOPInstanceUID"),
    )


def parse_key(key: str, prefix: str = "") -> InstanceKey:
    """Return the UIDs of an object key; raise InvalidUID when the key is not an instance key."""
    if not key.startswith(prefix) or not key.endswith(".dcm"):
        raise InvalidUID(f"{key!r} is not an instance key")
    parts = key[len(prefix) : -len(".dcm")].split("/")
    if len(parts) != 3:
        raise InvalidUID(f"{key!r} is not an instance key")
    return instance_key(*parts)
