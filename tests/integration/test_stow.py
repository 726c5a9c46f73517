"""STOW-RS bad input: each bad part fails alone with its FailureReason, and the valid parts are stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.dimse import status
from gateway.services import Services
from tests.factories import make_dataset, new_uid, to_part10_bytes
from tests.fixtures.gateway import gateway_services, make_settings
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration

BOUNDARY = "b0undary-for-tests"


def body(*parts: bytes | tuple[str, bytes], closing: bool = True) -> bytes:
    out = b""
    for part in parts:
        media_type, data = part if isinstance(part, tuple) else ("application/dicom", part)
        out += f"--{BOUNDARY}\r\nContent-Type: {media_type}\r\n\r\n".encode() + data + b"\r\n"
    return out + (f"--{BOUNDARY}--\r\n".encode() if closing else b"")


def post(client: TestClient, data: bytes, path: str = "/dicomweb/studies", part_type: str = "application/dicom") -> Any:
    headers = {"Content-Type": f'multipart/related; type="{part_type}"; boundary={BOUNDARY}'}
    return client.post(path, content=data, headers=headers)


@pytest.fixture
def services(tmp_path: Path, broker_url: str) -> Iterator[Services]:
    settings = make_settings(tmp_path / "data", broker_url=broker_url, stow_max_bytes=2_000_000)
    with gateway_services(settings) as services:
        yield services


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(create_app(services))


def failures(response: Any) -> list[tuple[str | None, int]]:
    items = response.json().get("00081198", {}).get("Value", [])
    return [(item["00081155"].get("Value", [None])[0], item["00081197"]["Value"][0]) for item in items]


def stored(response: Any) -> list[str]:
    return [item["00081155"]["Value"][0] for item in response.json().get("00081199", {}).get("Value", [])]


def test_valid_parts_are_stored_and_bad_parts_fail_alone(client: TestClient, services: Services) -> None:
    good = [make_dataset(), make_dataset()]
    bad_uid = make_dataset()
    bad_uid.SeriesInstanceUID = "1.2.abc"
    response = post(
        client,
        body(
            to_part10_bytes(good[0]),
            ("text/plain", b"not DICOM at all"),
            b"\x00" * 128 + b"DICMgarbage",
            to_part10_bytes(bad_uid),
            to_part10_bytes(good[1]),
        ),
    )
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/dicom+json"
    assert stored(response) == [good[0].SOPInstanceUID, good[1].SOPInstanceUID]
    assert failures(response) == [
        (None, status.STORAGE_CANNOT_UNDERSTAND),
        (None, status.STORAGE_CANNOT_UNDERSTAND),
        (bad_uid.SOPInstanceUID, status.STORAGE_CANNOT_UNDERSTAND_UID),
    ]
    keys = list(services.store.iter_keys())
    assert sorted(keys) == sorted(
        f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm" for ds in good
    )
    for item in response.json()["00081199"]["Value"]:
        assert item["00081190"]["Value"][0].startswith("http://testserver/dicomweb/studies/")


def test_a_part_of_another_study_than_the_url_fails_with_a900(client: TestClient, services: Services) -> None:
    study = new_uid()
    inside, outside = make_dataset(study_uid=study), make_dataset()
    response = post(client, body(to_part10_bytes(inside), to_part10_bytes(outside)), f"/dicomweb/studies/{study}")
    assert response.status_code == 202
    assert stored(response) == [inside.SOPInstanceUID]
    assert failures(response) == [(outside.SOPInstanceUID, status.STORAGE_DATASET_DOES_NOT_MATCH)]
    assert response.json()["00081190"]["Value"][0].endswith(f"/dicomweb/studies/{study}")
    assert len(list(services.store.iter_keys())) == 1


def test_nothing_stored_is_a_conflict(client: TestClient, services: Services) -> None:
    response = post(client, body(("text/plain", b"nope")))
    assert response.status_code == 409
    assert failures(response) == [(None, status.STORAGE_CANNOT_UNDERSTAND)]
    assert list(services.store.iter_keys()) == []


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (body(b"x" * 10, closing=False), "truncated"),
        (b"this is not multipart at all", "malformed multipart body"),
    ],
    ids=["missing-closing-boundary", "no-parts"],
)
def test_truncated_or_broken_bodies_are_400(client: TestClient, services: Services, data: bytes, detail: str) -> None:
    response = post(client, data)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert detail in response.json()["detail"]
    assert list(services.store.iter_keys()) == []


def test_a_truncated_dataset_inside_a_complete_body_fails_alone(client: TestClient) -> None:
    whole = to_part10_bytes(make_dataset(rows=64, columns=64))
    response = post(client, body(whole[: len(whole) - 3000]))
    assert response.status_code == 409
    assert failures(response)[0][1] in (status.STORAGE_CANNOT_UNDERSTAND, status.STORAGE_CANNOT_UNDERSTAND_UID)


def test_wrong_type_parameter_is_415(client: TestClient) -> None:
    response = post(client, body(to_part10_bytes(make_dataset())), part_type="application/dicom+xml")
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"


def test_not_multipart_is_415(client: TestClient) -> None:
    response = client.post("/dicomweb/studies", content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 415


def test_missing_boundary_is_400(client: TestClient) -> None:
    response = client.post(
        "/dicomweb/studies", content=b"x", headers={"Content-Type": 'multipart/related; type="application/dicom"'}
    )
    assert response.status_code == 400
    assert response.json()["parameter"] == "Content-Type"


def test_oversized_body_is_413_and_stores_nothing(client: TestClient, services: Services) -> None:
    big = to_part10_bytes(make_dataset(rows=512, columns=512, frames=4))  # 2 MiB of pixels > the 2 MB limit
    response = post(client, body(to_part10_bytes(make_dataset()), big))
    assert response.status_code == 413
    assert list(services.store.iter_keys()) == []


def test_invalid_study_uid_in_the_url_is_400(client: TestClient) -> None:
    response = post(client, body(to_part10_bytes(make_dataset())), "/dicomweb/studies/1.2.x")
    assert response.status_code == 400


def test_broker_outage_is_503_and_leaves_no_object(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", broker_url=f"redis://127.0.0.1:{free_port()}/0", broker_timeout=0.5)
    with gateway_services(settings) as services:
        response = post(TestClient(create_app(services)), body(to_part10_bytes(make_dataset())))
        assert response.status_code == 503
        assert failures(response)[0][1] == status.STORAGE_OUT_OF_RESOURCES_QUEUE
        assert list(services.store.iter_keys()) == []


def test_an_unknown_transfer_syntax_fails_with_c122(client: TestClient) -> None:
    ds = make_dataset()
    data = to_part10_bytes(ds).replace(b"1.2.840.10008.1.2.1\x00", b"1.2.3.4.5.6.7.8.9.1\x00", 1)
    response = post(client, body(data))
    assert response.status_code == 409
    assert failures(response) == [(ds.SOPInstanceUID, 0xC122)]


def test_a_declared_oversized_body_is_refused_before_reading(client: TestClient, services: Services) -> None:
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
        "Content-Length": "3000000",
    }
    response = client.post("/dicomweb/studies", content=b"x" * 3_000_000, headers=headers)
    assert response.status_code == 413
    assert list(services.store.iter_keys()) == []
