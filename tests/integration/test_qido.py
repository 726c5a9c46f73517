"""QIDO-RS through the HTTP API on an index filled from the corpus; expectations computed from the files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydicom import Dataset, dcmread

from gateway.api import create_app
from gateway.dicomweb.params import EMPTY_VALUE_WARNING
from gateway.services import Services
from testdata.generate import generate_corpus, pydicom_test_files
from tests.factories import new_uid
from tests.fixtures.gateway import gateway_services, make_settings
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration

MORE = '299 dicom-gateway: "There are additional results that can be requested"'
# PS3.18 Tables 10.6.3-3/-4/-5: present in every result of the level (type R and U, plus what we compute).
STUDY_KEYS = {"00080020", "00080030", "00080050", "00080061", "00080090", "00081190", "00100010", "00100020"}
STUDY_KEYS |= {"00100030", "00100040", "0020000D", "00200010", "00201206", "00201208"}
SERIES_KEYS = {"00080060", "00081190", "0020000E", "00200011", "00201209"}
INSTANCE_KEYS = {"00080016", "00080018", "00081190", "00200013"}


@pytest.fixture(scope="module")
def headers(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Dataset, bytes]]:
    paths = generate_corpus(tmp_path_factory.mktemp("corpus")) + pydicom_test_files()
    return [(dcmread(path, stop_before_pixels=True), path.read_bytes()) for path in paths]


def _fill(services: Services, corpus: list[tuple[Dataset, bytes]]) -> None:
    for ds, data in corpus:
        key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        services.store.put(key, data)  # what ingest does, then what the index worker does
        services.indexing.index_object(key)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, headers: list[tuple[Dataset, bytes]]) -> Iterator[Services]:
    # No task is queued here (objects are indexed inline), so the broker is never contacted.
    settings = make_settings(tmp_path_factory.mktemp("qido"), broker_url=f"redis://127.0.0.1:{free_port()}/0")
    with gateway_services(settings) as services:
        _fill(services, headers)
        yield services


@pytest.fixture(scope="module")
def client(services: Services) -> TestClient:
    return TestClient(create_app(services))


@pytest.fixture(scope="module")
def corpus(headers: list[tuple[Dataset, bytes]]) -> list[Dataset]:
    return [ds for ds, _ in headers]


def get(client: TestClient, path: str, **params: Any) -> httpx.Response:
    response = client.get(f"/dicomweb{path}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    return response


def values(results: list[dict[str, Any]], tag: str) -> list[Any]:
    return [result[tag]["Value"][0] for result in results]


def uids(corpus: list[Dataset], keyword: str, where: Any = lambda ds: True) -> set[str]:
    return {str(ds[keyword].value) for ds in corpus if where(ds)}


def text_of(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword) or "")


def test_every_search_resource_returns_its_entities(client: TestClient, corpus: list[Dataset]) -> None:
    ct = next(ds for ds in corpus if ds.get("Modality") == "CT")
    study, series = str(ct.StudyInstanceUID), str(ct.SeriesInstanceUID)
    in_study = [ds for ds in corpus if ds.StudyInstanceUID == study]
    checks = [
        ("/studies", "0020000D", uids(corpus, "StudyInstanceUID")),
        ("/series", "0020000E", uids(corpus, "SeriesInstanceUID")),
        ("/instances", "00080018", uids(corpus, "SOPInstanceUID")),
        (f"/studies/{study}/series", "0020000E", uids(in_study, "SeriesInstanceUID")),
        (f"/studies/{study}/instances", "00080018", uids(in_study, "SOPInstanceUID")),
        (
            f"/studies/{study}/series/{series}/instances",
            "00080018",
            uids(in_study, "SOPInstanceUID", lambda ds: ds.SeriesInstanceUID == series),
        ),
    ]
    for path, tag, expected in checks:
        results = get(client, path).json()
        assert set(values(results, tag)) == expected, path
        assert len(results) == len(expected), path


def test_each_level_carries_its_required_attributes(client: TestClient, corpus: list[Dataset]) -> None:
    study = get(client, "/studies").json()
    series = get(client, "/series").json()
    instances = get(client, "/instances").json()
    assert all(STUDY_KEYS <= result.keys() for result in study)
    # All series / all instances also carry the study's (and the series') attributes (PS3.18 10.6.3.3.2-3).
    assert all(SERIES_KEYS | STUDY_KEYS <= result.keys() for result in series)
    assert all(INSTANCE_KEYS | SERIES_KEYS | STUDY_KEYS <= result.keys() for result in instances)
    cine = next(ds for ds in corpus if ds.get("NumberOfFrames") == 10)
    (result,) = get(client, "/instances", SOPInstanceUID=cine.SOPInstanceUID).json()
    assert result["00280008"] == {"vr": "IS", "Value": [10]}
    assert (result["00280010"]["Value"], result["00280011"]["Value"]) == ([cine.Rows], [cine.Columns])
    assert result["00280100"]["Value"] == [cine.BitsAllocated]
    assert result["00081190"]["Value"][0] == (
        f"http://testserver/dicomweb/studies/{cine.StudyInstanceUID}/series/{cine.SeriesInstanceUID}"
        f"/instances/{cine.SOPInstanceUID}"
    )
    (mr,) = get(client, "/studies", PatientID="GW-0002").json()
    assert mr["00201206"]["Value"] == [1] and mr["00201208"]["Value"] == [3]
    assert mr["00080061"]["Value"] == ["MR"]
    assert mr["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Smith^Anna^Maria^Dr.^"}]}
    # A study without an accession number still carries the key, empty (type R).
    sparse = get(
        client,
        "/studies",
        StudyInstanceUID=next(ds for ds in corpus if not ds.get("PatientID") and ds.get("Rows") == 16).StudyInstanceUID,
    ).json()
    assert sparse[0]["00080050"] == {"vr": "SH"}
    # A study's series do not repeat the study attributes.
    scoped = get(client, f"/studies/{mr['0020000D']['Value'][0]}/series").json()
    assert "00100010" not in scoped[0] and SERIES_KEYS <= scoped[0].keys()


def test_matching_by_tag_or_keyword_at_each_level(client: TestClient, corpus: list[Dataset]) -> None:
    cases = [
        ("/studies", {"PatientName": "müller^JÜRGEN"}, "0020000D", lambda ds: ds.PatientID == "GW-0001"),
        ("/studies", {"00100010": "*anna*"}, "0020000D", lambda ds: "ANNA" in text_of(ds, "PatientName").upper()),
        (
            "/studies",
            {"StudyDate": "20240101-20241231", "ModalitiesInStudy": "OT,MR"},
            "0020000D",
            lambda ds: "20240101" <= text_of(ds, "StudyDate") <= "20241231" and ds.Modality in ("OT", "MR"),
        ),
        (
            "/studies",
            {"PatientName": "smi ann", "fuzzymatching": "true"},
            "0020000D",
            lambda ds: ds.PatientID == "GW-0002",
        ),
        (
            "/series",
            {"Modality": "CT", "00080020": "-20240115"},
            "0020000E",
            lambda ds: ds.Modality == "CT" and "" < text_of(ds, "StudyDate") <= "20240115",
        ),
        (
            "/series",
            {"SeriesDescription": "*(*)"},
            "0020000E",
            lambda ds: text_of(ds, "SeriesDescription").endswith(")"),
        ),
        (
            "/instances",
            {"InstanceNumber": "2", "Modality": "CT"},
            "00080018",
            lambda ds: ds.get("InstanceNumber") == 2 and ds.Modality == "CT",
        ),
        ("/instances", {"Rows": "64"}, "00080018", lambda ds: ds.get("Rows") == 64),
    ]
    tags = {"0020000D": "StudyInstanceUID", "0020000E": "SeriesInstanceUID", "00080018": "SOPInstanceUID"}
    for path, params, tag, where in cases:
        expected = uids(corpus, tags[tag], where)
        assert expected, params  # every case finds something
        assert set(values(get(client, path, **params).json(), tag)) == expected, params


def test_uid_lists_comma_separated_or_repeated(client: TestClient, corpus: list[Dataset]) -> None:
    two = sorted(uids(corpus, "SOPInstanceUID"))[:2]
    by_comma = get(client, "/instances", SOPInstanceUID=",".join(two)).json()
    repeated = client.get("/dicomweb/instances", params=[("00080018", two[0]), ("00080018", two[1])]).json()
    assert set(values(by_comma, "00080018")) == set(values(repeated, "00080018")) == set(two)


def test_matched_and_included_attributes_are_returned(client: TestClient, corpus: list[Dataset]) -> None:
    (ct,) = get(client, "/studies", PatientID="GW-0001", includefield="StudyDescription,PatientAge").json()
    assert ct["00081030"]["Value"] == ["CT Thorax mit KM"]
    assert "00101010" not in ct  # not a study-level attribute the index keeps
    # Series- and instance-level attributes are not returned by a study search (PS3.18 10.6.3.3.1).
    (ct,) = get(client, "/studies", PatientID="GW-0001", includefield=["Modality", "SOPClassUID"]).json()
    assert "00080060" not in ct and "00080016" not in ct
    # A study-level attribute asked of a study's series is returned.
    series = get(client, f"/studies/{ct['0020000D']['Value'][0]}/series", includefield="StudyDescription").json()
    assert {s["00081030"]["Value"][0] for s in series} == {"CT Thorax mit KM"}
    # Any attribute of the instance header can be asked of an instance search; all = the whole header.
    small = next(ds for ds in corpus if ds.get("PatientID") == "1CT1")
    (one,) = get(client, "/instances", SOPInstanceUID=small.SOPInstanceUID, includefield="00180050").json()
    assert one["00180050"]["Value"] == [float(small.SliceThickness)]
    (everything,) = get(client, "/instances", SOPInstanceUID=small.SOPInstanceUID, includefield="all").json()
    # Every element but bulk data (binary values of 1 KiB or more, PS3.18 F.2.7, pixel data among them).
    bulk = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
    present = {f"{e.tag:08X}" for e in small if not (e.VR in bulk and len(e.value or b"") >= 1024)}
    assert present <= everything.keys()
    assert "7FE00010" not in everything
    # An empty value (universal matching) asks the attribute back.
    (mr,) = get(client, "/studies", PatientID="GW-0002", StudyDescription="").json()
    assert mr["00081030"]["Value"] == ["MRI Brain w/o contrast"]


def test_paging_with_the_additional_results_warning(client: TestClient, corpus: list[Dataset]) -> None:
    every = values(get(client, "/instances").json(), "00080018")
    assert len(every) == len(corpus)
    pages: list[str] = []
    for offset in range(0, len(every), 5):
        response = get(client, "/instances", limit=5, offset=offset)
        pages += values(response.json(), "00080018")
        assert (response.headers.get("Warning") == MORE) == (offset + 5 < len(every))
    assert pages == every


def test_no_match_is_200_with_an_empty_array(client: TestClient) -> None:
    # CP-2473 (PS3.18 8.3.4.4.1, Table 10.6.3-2): zero matches is 200 OK with an empty payload, not 204.
    for path in ("/studies", f"/studies/{new_uid()}/series", f"/studies/{new_uid()}/series/{new_uid()}/instances"):
        response = client.get(f"/dicomweb{path}", params={"PatientID": "nobody"})
        assert (response.status_code, response.json()) == (200, []), path


def test_unsupported_matching_flags_are_warned_about(client: TestClient) -> None:
    response = get(client, "/studies", PatientID="GW-0001", emptyvaluematching="true")
    assert response.headers["Warning"] == f'299 dicom-gateway: "{EMPTY_VALUE_WARNING}"'


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"NotAKeyword": "x"}, "NotAKeyword"),
        ({"StudyDate": "20240101-2024"}, "StudyDate"),
        ({"StudyInstanceUID": "1.2.3,1.2.x"}, "StudyInstanceUID"),
        ({"limit": "-1"}, "limit"),
        ({"offset": "abc"}, "offset"),
        ({"includefield": "NotAKeyword"}, "includefield"),
        ({"fuzzymatching": "maybe"}, "fuzzymatching"),
        ({"Modality": "CT"}, "Modality"),
    ],
)
def test_bad_parameters_are_400_problems_naming_the_parameter(
    client: TestClient, params: dict[str, str], parameter: str
) -> None:
    response = client.get("/dicomweb/studies", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["parameter"] == parameter


def test_bad_uid_in_the_path_is_400(client: TestClient) -> None:
    for path in ("/studies/1.02/series", "/studies/abc/instances", f"/studies/{new_uid()}/series/1..2/instances"):
        response = client.get(f"/dicomweb{path}")
        assert response.status_code == 400, path
        assert response.headers["content-type"] == "application/problem+json"


def test_media_types(client: TestClient) -> None:
    for accept in ("application/dicom+json", "application/json", "*/*", "application/*", "text/html, */*;q=0.1"):
        assert client.get("/dicomweb/series", headers={"Accept": accept}).status_code == 200, accept
    for accept in ('multipart/related; type="application/dicom+xml"', "application/dicom+xml", "text/html"):
        response = client.get("/dicomweb/series", headers={"Accept": accept})
        assert response.status_code == 406, accept
        assert response.headers["content-type"] == "application/problem+json"


def test_retrieve_url_uses_the_public_url(tmp_path: Path, headers: list[tuple[Dataset, bytes]]) -> None:
    settings = make_settings(
        tmp_path / "data", broker_url=f"redis://127.0.0.1:{free_port()}/0", public_url="https://pacs.example.org/"
    )
    with gateway_services(settings) as services:
        _fill(services, headers[:1])
        (series,) = TestClient(create_app(services)).get("/dicomweb/series").json()
    ds = headers[0][0]
    assert series["00081190"]["Value"] == [
        f"https://pacs.example.org/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    ]


def test_same_answers_from_a_postgresql_index(
    tmp_path: Path, headers: list[tuple[Dataset, bytes]], client: TestClient, postgres_url: str
) -> None:
    # SQLite searches run on the event loop, PostgreSQL ones in the thread pool: both answer alike.
    settings = make_settings(tmp_path / "data", broker_url=f"redis://127.0.0.1:{free_port()}/0", index_url=postgres_url)
    with gateway_services(settings) as services:
        _fill(services, headers)
        on_postgresql = TestClient(create_app(services))
        for path, params in (
            ("/studies", {}),
            ("/studies", {"PatientID": str(headers[0][0].PatientID)}),
            ("/series", {"Modality": "CT", "includefield": "all"}),
            ("/instances", {"limit": "5", "offset": "2"}),
        ):
            expected = get(client, path, **params)
            answered = get(on_postgresql, path, **params)
            assert answered.json() == expected.json(), (path, params)
            assert answered.headers.get("warning") == expected.headers.get("warning")
