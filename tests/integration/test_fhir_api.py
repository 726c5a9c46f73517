"""The /fhir REST API over real HTTP (uvicorn): metadata, read, vread, search per parameter, paging, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread

from gateway.config import Settings
from gateway.fhir.patient import PatientKey, patient_resource_id
from gateway.fhir.service import FhirService
from gateway.fhir.versions import FhirVersion, model_class
from gateway.services import Services
from testdata.generate import generate_corpus, uid
from tests.fixtures.fhir_server import SchemaValidator
from tests.fixtures.fhir_server import schema_validator as start_schema_validator
from tests.fixtures.gateway import gateway_services, make_settings
from tests.fixtures.http import running_api

pytestmark = pytest.mark.integration

FHIR_JSON = "application/fhir+json"


class NoQueue:
    """The API test builds resources directly; nothing is queued."""

    def enqueue_study_changed(self, study_instance_uid: str, countdown: float) -> None:
        raise AssertionError("not expected")

    def enqueue_fhir_push(self, study_instance_uid: str, countdown: float = 0.0) -> None:
        raise AssertionError("not expected")


def load(services: Services, paths: list[Path]) -> list[str]:
    """Store, index and build every study of `paths`; return the study UIDs in build order."""
    studies: list[str] = []
    for path in paths:
        ds = dcmread(path, stop_before_pixels=True)
        key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        services.store.put(key, path.read_bytes())
        services.indexing.index_object(key)
        if ds.StudyInstanceUID not in studies:
            studies.append(ds.StudyInstanceUID)
    fhir = FhirService(services.settings, services.engine, NoQueue())
    for study in studies:
        fhir.build(study)
    return studies


def api(tmp_path: Path, version: FhirVersion) -> Iterator[tuple[str, list[str]]]:
    settings: Settings = make_settings(tmp_path / "data", fhir_version=version)
    with gateway_services(settings) as services:
        studies = load(services, generate_corpus(tmp_path / "corpus"))
        with running_api(services) as base:
            yield base, studies


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    yield from api(tmp_path_factory.mktemp("fhir-api"), "R4")


@pytest.fixture(scope="module")
def client(gateway: tuple[str, list[str]]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway[0], timeout=30) as client:
        yield client


def bundle(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params or None)  # an empty dict would drop the URL's own query
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = response.json()
    model_class("R4", "Bundle").model_validate(body)
    assert body["type"] == "searchset"
    return body


def ids(client: httpx.Client, **params: Any) -> list[str]:
    body = bundle(client, "/fhir/ImagingStudy", _count=100, **params)
    return [entry["resource"]["id"] for entry in body.get("entry", [])]


def outcome(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = response.json()
    model_class("R4", "OperationOutcome").model_validate(body)
    assert body["issue"][0]["code"] == code
    return body


def test_capability_statement_lists_what_is_supported(client: httpx.Client) -> None:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json()
    model_class("R4", "CapabilityStatement").model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert set(resources) == {"ImagingStudy", "Patient"}
    assert {p["name"] for p in resources["ImagingStudy"]["searchParam"]} == {
        "_id", "_lastUpdated", "identifier", "patient", "subject", "started", "modality", "status",
    }  # fmt: skip
    assert [i["code"] for i in resources["ImagingStudy"]["interaction"]] == ["read", "vread", "search-type"]


def test_read_and_vread(client: httpx.Client) -> None:
    study = uid("ct-study")
    response = client.get(f"/fhir/ImagingStudy/{study}")
    assert response.status_code == 200 and response.headers["etag"] == 'W/"1"'
    resource = response.json()
    model_class("R4", "ImagingStudy").model_validate(resource)
    assert (resource["numberOfSeries"], resource["numberOfInstances"]) == (3, 7)
    assert client.get(f"/fhir/ImagingStudy/{study}/_history/1").json() == resource
    outcome(client.get(f"/fhir/ImagingStudy/{study}/_history/2"), 404, "not-found")
    outcome(client.get("/fhir/ImagingStudy/1.2.3.4"), 404, "not-found")
    outcome(client.get("/fhir/Observation"), 404, "not-supported")
    patient = client.get(f"/fhir/Patient/{patient_resource_id(PatientKey('GW-0001', ''))}")
    assert patient.status_code == 200 and patient.json()["name"][0]["family"] == "Müller"


def test_search_by_study_instance_uid_as_ehrs_do(client: httpx.Client) -> None:
    study = uid("mr-study")
    # The pipe unencoded, as many clients send it, and encoded.
    for url in (
        f"/fhir/ImagingStudy?identifier=urn:dicom:uid|urn:oid:{study}",
        f"/fhir/ImagingStudy?identifier=urn%3Adicom%3Auid%7Curn%3Aoid%3A{study}",
    ):
        body = client.get(url).json()
        assert body["total"] == 1
        assert body["entry"][0]["fullUrl"].endswith(f"/fhir/ImagingStudy/{study}")
        assert body["entry"][0]["resource"]["numberOfInstances"] == 3


def test_search_parameters(client: httpx.Client) -> None:
    ct, mr, us, sparse = (uid(n) for n in ("ct-study", "mr-study", "us-study", "sparse-study"))
    assert ids(client, identifier="ACC-US-0003") == [us]
    assert ids(client, patient=f"Patient/{patient_resource_id(PatientKey('GW-0002', ''))}") == [mr]
    assert ids(client, **{"subject:identifier": "GW-0003"}) == [us]
    assert ids(client, modality="http://dicom.nema.org/resources/ontology/DCM|CT") == [ct, sparse]
    assert ids(client, modality="OT") == [us]
    assert ids(client, status="available") == [ct, mr, us, sparse]
    assert ids(client, status="cancelled") == []
    # Dates only (no TimezoneOffsetFromUTC in the corpus): CT 2024-01-15, MR 2024-03-02, US 2024-12-31.
    assert ids(client, started="2024-03-02") == [mr]
    assert ids(client, started="ge2024-03-02") == [mr, us]
    assert ids(client, started="gt2024-03-02") == [us]
    assert ids(client, started="le2024-03-02") == [ct, mr]
    assert ids(client, started="lt2024-03-02") == [ct]
    assert ids(client, _lastUpdated="ge2000-01-01") == [ct, mr, us, sparse]
    assert ids(client, _lastUpdated="lt2000-01-01") == []
    patients = bundle(client, "/fhir/Patient", identifier="GW-0003")
    assert patients["total"] == 1 and patients["entry"][0]["resource"]["name"][1]["family"] == "山田"


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_paging_follows_next_links(client: httpx.Client, gateway: tuple[str, list[str]], count: int) -> None:
    seen: list[str] = []
    url: str | None = f"/fhir/ImagingStudy?_count={count}"
    pages = 0
    while url is not None:
        body = bundle(client, url)
        assert body["total"] == 4
        entries = body.get("entry", [])
        assert len(entries) <= count
        seen += [e["resource"]["id"] for e in entries]
        links = {link["relation"]: link["url"] for link in body["link"]}
        url = links.get("next")
        pages += 1
    assert seen == gateway[1]  # every study exactly once, in a stable order
    assert pages == -(-4 // count)
    assert "entry" not in bundle(client, "/fhir/ImagingStudy", _count=0)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("bodysite=CHEST", "bodysite"),
        ("started=2024-13-01", "started"),
        ("started=ap2024-01-01", "started"),
        ("_count=-1", "_count"),
        ("_count=ten", "_count"),
        ("status=bogus", "status"),
        ("patient=Group/1", "patient"),
        ("identifier=", "identifier"),
        ("identifier=a|b|c", "identifier"),
        ("_lastUpdated=yesterday", "_lastUpdated"),
    ],
)
def test_bad_parameters_are_400_operation_outcomes(client: httpx.Client, query: str, parameter: str) -> None:
    body = outcome(client.get(f"/fhir/ImagingStudy?{query}"), 400, "invalid")
    assert body["issue"][0]["expression"] == [parameter]


def test_lenient_handling_ignores_unknown_parameters(client: httpx.Client) -> None:
    response = client.get("/fhir/ImagingStudy?bodysite=CHEST", headers={"Prefer": "handling=lenient"})
    assert response.status_code == 200 and response.json()["total"] == 4


def test_formats(client: httpx.Client) -> None:
    outcome(client.get("/fhir/metadata?_format=xml"), 406, "not-supported")
    outcome(client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"}), 406, "not-supported")
    for accept in ("application/fhir+json", "application/json", "*/*", "application/fhir+json; fhirVersion=4.0"):
        assert client.get("/fhir/metadata", headers={"Accept": accept}).status_code == 200
    assert client.get("/fhir/metadata?_format=json").status_code == 200


def test_admin_view_of_pushes(client: httpx.Client) -> None:
    response = client.get("/api/fhir/push", params={"status": "failed"})
    assert response.status_code == 200 and response.json() == {"target": "", "pushes": []}
    assert client.get("/api/fhir/push", params={"status": "bogus"}).status_code == 400


@pytest.fixture(scope="module")
def schema(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchemaValidator]:
    yield from start_schema_validator(pytestconfig, tmp_path_factory)


def test_responses_pass_the_official_r4_json_schema(client: httpx.Client, schema: SchemaValidator) -> None:
    responses = [
        client.get("/fhir/metadata"),
        client.get("/fhir/ImagingStudy", params={"_count": 2}),
        client.get("/fhir/Patient"),
        client.get("/fhir/ImagingStudy", params={"started": "bad"}),
        client.get("/fhir/ImagingStudy/1.2.3"),
    ]
    for response in responses:
        body = response.json()
        if body["resourceType"] == "CapabilityStatement":
            # The package's schema is that of 4.0.0 and predates the 4.0.1 technical correction we declare.
            assert body["fhirVersion"] == "4.0.1"
            body["fhirVersion"] = "4.0.0"
        assert schema.errors(body) == [], response.url


def test_r5_server(tmp_path: Path) -> None:
    for base, studies in api(tmp_path, "R5"):
        with httpx.Client(base_url=base, timeout=30) as r5:
            statement = r5.get("/fhir/metadata").json()
            model_class("R5", "CapabilityStatement").model_validate(statement)
            assert statement["fhirVersion"] == "5.0.0"
            resource = r5.get(f"/fhir/ImagingStudy/{studies[0]}").json()
            model_class("R5", "ImagingStudy").model_validate(resource)
            assert "coding" in resource["modality"][0]
            found = r5.get("/fhir/ImagingStudy", params={"modality": "CT"}).json()
            model_class("R5", "Bundle").model_validate(found)
            assert found["total"] == 2
