"""DICOMweb cross-cutting behaviour over HTTP: validators, compression, CORS preflight and DELETE."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway.api import create_app
from gateway.index.fhir_models import FhirStudyChange
from gateway.index.models import Instance, Patient, Series, Study
from gateway.services import Services
from tests.factories import make_dataset, new_uid, to_part10_bytes
from tests.fixtures.gateway import gateway_services, make_settings

pytestmark = pytest.mark.integration

VIEWER = "https://viewer.example.org"


@pytest.fixture
def services(tmp_path: Path, broker_url: str) -> Iterator[Services]:
    settings = make_settings(tmp_path / "data", broker_url=broker_url, cors_origins=[VIEWER], allow_delete=True)
    with gateway_services(settings) as services:
        yield services


def add(services: Services, **attrs: Any) -> Any:
    ds = make_dataset(**attrs)
    services.indexing.index_object(services.ingest.ingest_file(to_part10_bytes(ds)).key)
    return ds


def counts(services: Services) -> tuple[int, int, int, int]:
    with services.repository.sessions() as session:
        return tuple(  # type: ignore[return-value]
            int(session.execute(select(func.count()).select_from(model)).scalar_one())
            for model in (Patient, Study, Series, Instance)
        )


def test_metadata_has_validators_and_answers_304_when_unchanged(services: Services) -> None:
    ds = add(services)
    client = TestClient(create_app(services))
    url = f"/dicomweb/studies/{ds.StudyInstanceUID}/metadata"
    first = client.get(url)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert first.headers["last-modified"].endswith(" GMT")
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    add(services, study_uid=ds.StudyInstanceUID, series_uid=ds.SeriesInstanceUID)
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag and len(changed.json()) == 2


def test_json_is_gzipped_for_clients_that_accept_it_and_dicom_is_not(services: Services) -> None:
    ds = add(services)
    client = TestClient(create_app(services))
    metadata = client.get(f"/dicomweb/studies/{ds.StudyInstanceUID}/metadata", headers={"Accept-Encoding": "gzip"})
    assert metadata.headers["content-encoding"] == "gzip"
    assert metadata.json()[0]["00080018"]["Value"] == [ds.SOPInstanceUID]  # httpx decodes it
    dicom = client.get(
        f"/dicomweb/studies/{ds.StudyInstanceUID}",
        headers={"Accept-Encoding": "gzip", "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert dicom.status_code == 200 and "content-encoding" not in dicom.headers


def test_cors_preflight_for_a_configured_viewer_only(services: Services) -> None:
    client = TestClient(create_app(services))
    headers = {"Origin": VIEWER, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "accept"}
    allowed = client.options("/dicomweb/studies", headers=headers)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == VIEWER
    other = client.options("/dicomweb/studies", headers={**headers, "Origin": "https://evil.example.org"})
    assert "access-control-allow-origin" not in other.headers
    listing = client.get("/dicomweb/studies", headers={"Origin": VIEWER})
    assert listing.headers["access-control-allow-origin"] == VIEWER


def test_delete_instance_series_and_study_remove_objects_and_rows(services: Services) -> None:
    study, series = new_uid(), new_uid()
    first = add(services, study_uid=study, series_uid=series)
    second = add(services, study_uid=study, series_uid=series)
    other_series = add(services, study_uid=study, modality="MR")
    unrelated = add(services, patient_id="OTHER")
    client = TestClient(create_app(services))
    assert counts(services) == (2, 2, 3, 4)

    assert (
        client.delete(f"/dicomweb/studies/{study}/series/{series}/instances/{first.SOPInstanceUID}").status_code == 204
    )
    assert counts(services) == (2, 2, 3, 3)
    studies = {s["0020000D"]["Value"][0]: s for s in client.get("/dicomweb/studies").json()}
    assert studies[study]["00201208"]["Value"] == [2]

    assert client.delete(f"/dicomweb/studies/{study}/series/{series}").status_code == 204
    assert counts(services) == (2, 2, 2, 2)
    assert client.delete(f"/dicomweb/studies/{study}").status_code == 204
    assert counts(services) == (1, 1, 1, 1)
    with services.repository.sessions() as session:  # the ImagingStudy will be rebuilt (entered-in-error)
        noted = session.scalars(select(FhirStudyChange.study_instance_uid)).all()
    assert study in noted
    assert client.get(f"/dicomweb/studies/{study}/metadata").status_code == 404
    assert client.delete(f"/dicomweb/studies/{study}").status_code == 404
    remaining = list(services.store.iter_keys())
    assert remaining == [f"{unrelated.StudyInstanceUID}/{unrelated.SeriesInstanceUID}/{unrelated.SOPInstanceUID}.dcm"]
    assert second.SOPInstanceUID not in "".join(remaining) and other_series.SOPInstanceUID not in "".join(remaining)


def test_delete_is_forbidden_unless_enabled(tmp_path: Path, broker_url: str) -> None:
    with gateway_services(make_settings(tmp_path / "data", broker_url=broker_url)) as services:
        ds = add(services)
        response = TestClient(create_app(services)).delete(f"/dicomweb/studies/{ds.StudyInstanceUID}")
        assert response.status_code == 403
        assert "GATEWAY_ALLOW_DELETE" in response.json()["detail"]
        assert len(list(services.store.iter_keys())) == 1
