"""QIDO-RS (PS3.18 10.6): search for studies; answers come from the index, never from objects."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from gateway.dicomweb.media import DicomJSONResponse
from gateway.index.queries import StudyRow, count_studies, list_studies
from gateway.services import Services


def study_json(row: StudyRow, base_url: str) -> dict[str, Any]:
    """Return the QIDO-RS study result of one row (PS3.18 Table 10.6.3-3 required attributes)."""
    study = row.study
    result: dict[str, Any] = dict(study.study_json)
    result["00080061"] = (
        {"vr": "CS", "Value": study.modalities_in_study.split("\\")} if study.modalities_in_study else {"vr": "CS"}
    )
    result["00201206"] = {"vr": "IS", "Value": [study.number_of_series]}
    result["00201208"] = {"vr": "IS", "Value": [study.number_of_instances]}
    result["00081190"] = {"vr": "UR", "Value": [f"{base_url}/studies/{study.study_instance_uid}"]}
    for tag, vr in (
        ("00080020", "DA"),
        ("00080030", "TM"),
        ("00080050", "SH"),
        ("00080090", "PN"),
        ("00100010", "PN"),
        ("00100020", "LO"),
        ("00100030", "DA"),
        ("00100040", "CS"),
        ("0020000D", "UI"),
        ("00200010", "SH"),
    ):
        result.setdefault(tag, {"vr": vr})  # PS3.18 10.6.3: required keys are present, empty when unknown
    return dict(sorted(result.items()))


def make_router(services: Services) -> APIRouter:
    """Return the QIDO-RS router bound to `services`."""
    router = APIRouter()

    @router.get("/studies", response_class=DicomJSONResponse, summary="QIDO-RS: search for studies")
    def search_studies(
        request: Request,
        limit: Annotated[int | None, Query(ge=0, le=10000)] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> DicomJSONResponse:
        sessions = services.repository.sessions
        rows = list_studies(sessions, limit=limit, offset=offset)
        # Behind a proxy the URL clients must use differs from the one we see: GATEWAY_PUBLIC_URL.
        public = services.settings.public_url or str(request.base_url)
        base_url = public.rstrip("/") + "/dicomweb"
        headers: dict[str, str] = {}
        if limit is not None and len(rows) == limit and count_studies(sessions) > offset + limit:
            # PS3.18 8.3.4.4: tell the client that more results exist beyond this page.
            headers["Warning"] = '299 dicom-gateway: "There are additional results that can be requested"'
        return DicomJSONResponse([study_json(row, base_url) for row in rows], headers=headers)

    return router
