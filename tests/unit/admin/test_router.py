"""/api/aes and /api/status over a SQLite index: JSON in and out, validation and problem+json errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.api import create_app
from tests.fixtures.gateway import gateway_services, make_settings
from tests.fixtures.servers import free_port


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    # No broker runs: /api/status reports the queue depth as unknown.
    settings = make_settings(tmp_path / "data", broker_url=f"redis://127.0.0.1:{free_port()}/0", broker_timeout=0.5)
    with gateway_services(settings) as services:
        yield TestClient(create_app(services))


def test_create_read_update_delete(client: TestClient) -> None:
    created = client.post(
        "/api/aes", json={"ae_title": " CT01 ", "host": "10.0.0.5", "port": 104, "operations": ["store"]}
    )
    assert created.status_code == 201
    assert created.headers["location"] == "/api/aes/CT01"
    assert created.json() == {
        "ae_title": "CT01",
        "host": "10.0.0.5",
        "port": 104,
        "description": "",
        "operations": ["store"],
        "tls": False,
        "enabled": True,
        "source": "admin",
    }
    assert client.get("/api/aes/CT01").json()["operations"] == ["store"]
    patched = client.patch("/api/aes/CT01", json={"operations": ["find", "store"], "tls": True})
    assert patched.status_code == 200
    assert (patched.json()["operations"], patched.json()["tls"]) == (["store", "find"], True)
    assert [entry["ae_title"] for entry in client.get("/api/aes").json()] == ["CT01"]
    assert client.delete("/api/aes/CT01").status_code == 204
    assert client.get("/api/aes").json() == []


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"ae_title": "A" * 17, "host": "h", "port": 104}, "ae_title"),
        ({"ae_title": "BAD\\AE", "host": "h", "port": 104}, "ae_title"),
        ({"ae_title": "   ", "host": "h", "port": 104}, "ae_title"),
        ({"ae_title": "CTRL\x01", "host": "h", "port": 104}, "ae_title"),
        ({"ae_title": "OK", "host": "h", "port": 0}, "port"),
        ({"ae_title": "OK", "host": "h", "port": 65536}, "port"),
        ({"ae_title": "OK", "host": "", "port": 104}, "host"),
        ({"ae_title": "OK", "host": "bad host", "port": 104}, "host"),
        ({"ae_title": "OK", "host": "h", "port": 104, "operations": ["fly"]}, "0"),
        ({"ae_title": "OK", "host": "h", "port": 104, "colour": "red"}, "colour"),
    ],
)
def test_invalid_bodies_are_400_problem_json(client: TestClient, body: dict[str, object], parameter: str) -> None:
    response = client.post("/api/aes", json=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["parameter"] == parameter


def test_conflict_and_not_found(client: TestClient) -> None:
    assert client.post("/api/aes", json={"ae_title": "CT01", "host": "h", "port": 104}).status_code == 201
    duplicate = client.post("/api/aes", json={"ae_title": "CT01", "host": "h", "port": 104})
    assert duplicate.status_code == 409 and duplicate.headers["content-type"] == "application/problem+json"
    for response in (
        client.get("/api/aes/NOBODY"),
        client.patch("/api/aes/NOBODY", json={"port": 1}),
        client.delete("/api/aes/NOBODY"),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


def test_status_without_a_broker(client: TestClient) -> None:
    body = client.get("/api/status").json()
    assert body["ae_title"] == "DICOMGW" and body["association_policy"] == "open"
    assert body["associations"] == {"accepted": 0, "rejected": 0, "rejected_by_reason": {}, "recent": []}
    assert body["queue"] == {"index": None}
