"""The HTTP API over real Redis and SQLite: health, readiness, metrics and the study listing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.services import Services
from tests.factories import make_dataset, to_part10_bytes
from tests.fixtures.gateway import gateway_services, make_settings
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def services(tmp_path: Path, broker_url: str) -> Iterator[Services]:
    with gateway_services(make_settings(tmp_path / "data", broker_url=broker_url)) as services:
        yield services


def add_studies(services: Services, count: int) -> list[str]:
    uids = []
    for n in range(count):
        ds = make_dataset(StudyDate=f"2024010{n + 1}")
        key = services.ingest.ingest_file(to_part10_bytes(ds)).key
        services.indexing.index_object(key)  # what the worker does, done inline here
        uids.append(str(ds.StudyInstanceUID))
    return uids


def test_health_and_readiness(services: Services) -> None:
    client = TestClient(create_app(services))
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"index": "ok", "store": "ok", "broker": "ok"}


def test_readiness_reports_a_broker_outage(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", broker_url=f"redis://127.0.0.1:{free_port()}/0", broker_timeout=0.5)
    with gateway_services(settings) as services:
        response = TestClient(create_app(services)).get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["index"] == "ok" and checks["store"] == "ok"
    assert "broker unavailable" in checks["broker"]


def test_studies_are_listed_newest_first_with_paging(services: Services) -> None:
    uids = add_studies(services, 3)
    client = TestClient(create_app(services))
    response = client.get("/dicomweb/studies")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    body = response.json()
    assert [s["0020000D"]["Value"][0] for s in body] == list(reversed(uids))
    first = body[0]
    assert first["00201208"] == {"vr": "IS", "Value": [1]}
    assert first["00080061"] == {"vr": "CS", "Value": ["CT"]}
    assert first["00081190"]["Value"][0].endswith(f"/dicomweb/studies/{uids[-1]}")
    page = client.get("/dicomweb/studies", params={"limit": 2, "offset": 0})
    assert len(page.json()) == 2 and "Warning" in page.headers
    last = client.get("/dicomweb/studies", params={"limit": 2, "offset": 2})
    assert [s["0020000D"]["Value"][0] for s in last.json()] == [uids[0]] and "Warning" not in last.headers


def test_bad_query_parameter_is_problem_json(services: Services) -> None:
    response = TestClient(create_app(services)).get("/dicomweb/studies", params={"limit": "many"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["parameter"] == "limit"


def test_empty_index_answers_an_empty_list(services: Services) -> None:
    response = TestClient(create_app(services)).get("/dicomweb/studies")
    assert (response.status_code, response.json()) == (200, [])


def test_metrics_exposes_index_counts(services: Services) -> None:
    add_studies(services, 2)
    text = TestClient(create_app(services)).get("/metrics").text
    assert 'gateway_index_objects{level="studies"} 2.0' in text
    assert 'gateway_index_objects{level="instances"} 2.0' in text


def test_metrics_count_requests_by_method_and_status(services: Services) -> None:
    client = TestClient(create_app(services))
    assert client.get("/dicomweb/studies").status_code == 200
    assert client.get("/dicomweb/studies?NoSuchKey=1").status_code == 400
    assert client.get("/no/such/path").status_code == 404
    text = client.get("/metrics").text
    for status in ("200", "400", "404"):
        assert f'gateway_http_requests_total{{method="GET",status="{status}"}} 1.0' in text
    assert 'gateway_http_request_seconds_count{method="GET"} 3.0' in text
