"""QIDO-RS (PS3.18 10.6): search for studies, series and instances; answers come from the index, never objects."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.types import DecoratedCallable
from starlette.concurrency import run_in_threadpool

from gateway.dicom.attributes import (
    INSTANCE_RETURN_KEYS,
    SERIES_LEVEL_TAGS,
    SERIES_RETURN_KEYS,
    STUDY_LEVEL_TAGS,
    STUDY_RETURN_KEYS,
    QueryLevel,
    vr_of,
)
from gateway.dicom.uids import validate_uid
from gateway.dicomweb.media import DICOM_JSON, DicomJSONResponse, accepts
from gateway.dicomweb.params import MAX_RESULTS, QidoParams, parse_qido_params
from gateway.errors import NotAcceptable
from gateway.index.queries import Match, ResultRow, SingleValue, search
from gateway.services import Services

STUDY_INSTANCE_UID = "0020000D"
SERIES_INSTANCE_UID = "0020000E"
RETRIEVE_URL = "00081190"
# PS3.18 8.3.4.4: the Warning sent with a page that does not hold every match.
MORE_RESULTS_WARNING = "There are additional results that can be requested"
_DESCRIPTION = (
    "Match on any key listed in docs/conformance.md, by keyword or tag: `PatientName=smith*`, "
    "`0020000D=1.2.3,1.2.4`, `StudyDate=20240101-20240131`; an empty value asks the attribute back."
)


def _query_parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


# The OpenAPI schema at /docs: parameters are parsed from the raw query string (params.py), so list them here.
_OPENAPI: dict[str, Any] = {
    "parameters": [
        _query_parameter("limit", {"type": "integer", "minimum": 0}, f"at most this many results (cap {MAX_RESULTS})"),
        _query_parameter("offset", {"type": "integer", "minimum": 0}, "skip this many results"),
        _query_parameter(
            "includefield",
            {"type": "array", "items": {"type": "string"}},
            "attributes to return: keywords or tags, comma-separated or repeated, or `all`",
        ),
        _query_parameter("fuzzymatching", {"type": "boolean"}, "prefix matching of each person name component"),
    ],
    "responses": {"400": {"description": "unknown or invalid parameter (problem+json naming it)"}},
}


@dataclass(frozen=True)
class _Render:
    """What to put in each result: the request's return keys and how far up the hierarchy to go."""

    params: QidoParams
    base_url: str
    with_study: bool  # target is all series / all instances: add the study attributes (PS3.18 10.6.3.3.2-3)
    with_series: bool  # target is all instances or a study's instances: add the series attributes

    @property
    def asked(self) -> frozenset[str]:
        return self.params.includefields | self.params.matched


def _element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def _required(result: dict[str, Any], source: Mapping[str, Any], required: Mapping[str, bool]) -> None:
    """Add a level's return keys (PS3.18 10.6.3.3): type R ones empty when unknown, type C ones when known."""
    for tag, always in required.items():
        if tag in source:
            result[tag] = source[tag]
        elif always:
            result.setdefault(tag, _element(vr_of(tag)))


def _asked(
    result: dict[str, Any], source: Mapping[str, Any], tags: frozenset[str], kept: frozenset[str] | None
) -> None:
    """Add the attributes asked for; one the level keeps (`kept`, None: any) but lacks is returned empty."""
    for tag in tags:
        if tag in source:
            result[tag] = source[tag]
        elif kept is None or tag in kept:
            result.setdefault(tag, _element(vr_of(tag)))  # PS3.4 C.4.1.1.3.2: a return key without value


def _study(row: ResultRow, render: _Render) -> dict[str, Any]:
    """PS3.18 Table 10.6.3-3, plus the study-level attributes asked for (all of them with includefield=all)."""
    study = row.study
    result = dict(study.study_json) if render.params.include_all else {}
    _required(result, study.study_json, STUDY_RETURN_KEYS)
    _asked(result, study.study_json, render.asked & STUDY_LEVEL_TAGS, STUDY_LEVEL_TAGS)
    modalities = study.modalities_in_study.split("\\") if study.modalities_in_study else []
    result["00080061"] = _element("CS", *modalities)
    result["00080056"] = _element("CS", "ONLINE")  # InstanceAvailability: everything indexed is in the store
    result["00201206"] = _element("IS", study.number_of_series)
    result["00201208"] = _element("IS", study.number_of_instances)
    result[RETRIEVE_URL] = _element("UR", f"{render.base_url}/studies/{study.study_instance_uid}")
    return result


def _series(row: ResultRow, render: _Render) -> dict[str, Any]:
    """PS3.18 Table 10.6.3-4 (with Table 10.6.3-3 for all series), plus the asked series or study attributes."""
    assert row.series is not None
    series = row.series
    if render.with_study:
        result = _study(row, render)
    else:
        result = {}
        _asked(result, row.study.study_json, render.asked & STUDY_LEVEL_TAGS, STUDY_LEVEL_TAGS)
    if render.params.include_all:
        result.update(series.series_json)
    _required(result, series.series_json, SERIES_RETURN_KEYS)
    _asked(result, series.series_json, render.asked & SERIES_LEVEL_TAGS, SERIES_LEVEL_TAGS)
    result["00080056"] = _element("CS", "ONLINE")
    result["00201209"] = _element("IS", series.number_of_instances)
    url = f"{render.base_url}/studies/{row.study.study_instance_uid}/series/{series.series_instance_uid}"
    result[RETRIEVE_URL] = _element("UR", url)
    return result


def _instance(row: ResultRow, render: _Render) -> dict[str, Any]:
    """PS3.18 Table 10.6.3-5 (with the series and study tables above it), plus any asked header attribute."""
    assert row.series is not None and row.instance is not None
    instance = row.instance
    header: dict[str, Any] = orjson.loads(instance.metadata_json)
    result = _series(row, render) if render.with_series else {}
    if render.params.include_all:
        # The whole stored header, except values only reachable through WADO-RS bulk data URIs.
        result.update({tag: element for tag, element in header.items() if "BulkDataURI" not in element})
    _required(result, header, INSTANCE_RETURN_KEYS)
    _asked(result, header, render.asked, None)  # the header holds every level's attributes
    result["00080056"] = _element("CS", "ONLINE")
    url = (
        f"{render.base_url}/studies/{row.study.study_instance_uid}/series/{row.series.series_instance_uid}"
        f"/instances/{instance.sop_instance_uid}"
    )
    result[RETRIEVE_URL] = _element("UR", url)
    return result


def _check_accept(request: Request) -> None:
    """PS3.18 8.7: we answer application/dicom+json (also sent for application/json); anything else is 406."""
    offered = request.query_params.getlist("accept") or [request.headers.get("accept", "")]
    for accept in offered:
        if not accept or accepts(accept, DICOM_JSON) or accepts(accept, "application/json"):
            return
    raise NotAcceptable(f"QIDO-RS answers {DICOM_JSON} only, not {offered[0]!r}")


def make_router(services: Services) -> APIRouter:
    """Return the QIDO-RS router bound to `services`."""
    router = APIRouter()

    def run(
        request: Request, level: QueryLevel, study: str | None = None, series: str | None = None
    ) -> DicomJSONResponse:
        path: list[Match] = []
        if study is not None:
            path.append(Match(STUDY_INSTANCE_UID, SingleValue(validate_uid(study, "StudyInstanceUID"))))
        if series is not None:
            path.append(Match(SERIES_INSTANCE_UID, SingleValue(validate_uid(series, "SeriesInstanceUID"))))
        _check_accept(request)
        params = parse_qido_params(request.query_params.multi_items(), level)
        query = replace(params.query, matches=params.query.matches + tuple(path))
        result = search(services.repository.sessions, query)
        # Behind a proxy the URL clients must use differs from the one we see: GATEWAY_PUBLIC_URL.
        public = services.settings.public_url or str(request.base_url)
        render = _Render(params, public.rstrip("/") + "/dicomweb", with_study=study is None, with_series=series is None)
        build = {QueryLevel.STUDY: _study, QueryLevel.SERIES: _series, QueryLevel.IMAGE: _instance}[level]
        body = [dict(sorted(build(row, render).items())) for row in result.rows]
        warnings = [*params.warnings, MORE_RESULTS_WARNING] if result.more else list(params.warnings)
        # PS3.18 8.3.4.4-6: Warning: 299 {service}: {text}; CP-2473: no match is 200 with an empty array.
        headers = {"Warning": ", ".join(f'299 dicom-gateway: "{text}"' for text in warnings)} if warnings else {}
        return DicomJSONResponse(body, headers=headers)

    # On SQLite a search is a read of a local, cached file (well under a millisecond for a page of studies): it
    # runs on the event loop. The thread pool hop alone cost ~0.3 ms a request, and 8 concurrent searches in
    # threads fought over the GIL for ~0.5 ms more (profiled with py-spy; bench issue #6). A server index
    # (PostgreSQL) waits on the network, so its searches stay in the thread pool.
    inline = services.engine.dialect.name == "sqlite"

    async def answer(request: Request, level: QueryLevel, study: str | None, series: str | None) -> DicomJSONResponse:
        if inline:
            return run(request, level, study, series)
        return await run_in_threadpool(run, request, level, study, series)

    def get(path: str, summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
        return router.get(
            path, response_class=DicomJSONResponse, summary=summary, description=_DESCRIPTION, openapi_extra=_OPENAPI
        )

    @get("/studies", "QIDO-RS: search for studies")
    async def search_studies(request: Request) -> DicomJSONResponse:
        return await answer(request, QueryLevel.STUDY, None, None)

    @get("/series", "QIDO-RS: search for series")
    async def search_series(request: Request) -> DicomJSONResponse:
        return await answer(request, QueryLevel.SERIES, None, None)

    @get("/instances", "QIDO-RS: search for instances")
    async def search_instances(request: Request) -> DicomJSONResponse:
        return await answer(request, QueryLevel.IMAGE, None, None)

    @get("/studies/{study}/series", "QIDO-RS: search a study's series")
    async def search_study_series(request: Request, study: str) -> DicomJSONResponse:
        return await answer(request, QueryLevel.SERIES, study, None)

    @get("/studies/{study}/instances", "QIDO-RS: search a study's instances")
    async def search_study_instances(request: Request, study: str) -> DicomJSONResponse:
        return await answer(request, QueryLevel.IMAGE, study, None)

    @get("/studies/{study}/series/{series}/instances", "QIDO-RS: search a series' instances")
    async def search_series_instances(request: Request, study: str, series: str) -> DicomJSONResponse:
        return await answer(request, QueryLevel.IMAGE, study, series)

    return router
