"""End to end: storescu sends a study; the debounced worker task builds its ImagingStudy; FHIR search finds it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread

from gateway.fhir.versions import model_class
from testdata.generate import generate_corpus
from tests.factories import new_uid
from tests.fixtures.gateway import gateway_services, make_settings, running_scp, wait_for, worker_process
from tests.fixtures.http import running_api

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK (storescu) is not installed"),
]

DEBOUNCE = 2.0


def storescu(port: int, files: list[Path]) -> None:
    result = subprocess.run(
        ["storescu", "-v", "-nh", "-aec", "DICOMGW", "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"},
    )
    # storescu exits 0 even when stores fail (DESIGN.md field notes): read each response's status.
    log = result.stdout + result.stderr
    assert result.returncode == 0 and log.count("Received Store Response (Success)") == len(files), log


def search(base: str, study: str) -> dict[str, Any]:
    # The query exactly as an EHR writes it, the "|" unencoded.
    response = httpx.get(f"{base}/fhir/ImagingStudy?identifier=urn:dicom:uid|urn:oid:{study}", timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_storescu_study_becomes_a_searchable_imaging_study(tmp_path: Path, broker_url: str) -> None:
    corpus = generate_corpus(tmp_path / "corpus")
    # The CT study's two uncompressed series first (storescu sends uncompressed syntaxes only).
    first = [p for p in corpus if p.parts[-3:-1] in (("ct", "series1"), ("ct", "series2"))]
    study = str(dcmread(first[0], stop_before_pixels=True).StudyInstanceUID)
    settings = make_settings(tmp_path / "data", broker_url=broker_url, fhir_debounce_seconds=DEBOUNCE)
    with (
        gateway_services(settings) as services,
        running_scp(services) as port,
        worker_process(settings, tmp_path / "worker.log"),
        running_api(services) as base,
    ):
        storescu(port, first)

        def counts() -> tuple[int, int] | None:
            found = search(base, study)
            if found["total"] == 0:
                return None
            resource = found["entry"][0]["resource"]
            return resource["numberOfSeries"], resource["numberOfInstances"]

        wait_for(lambda: counts() == (2, 6), timeout=DEBOUNCE + 20, what="the ImagingStudy with 2 series, 6 instances")
        before = search(base, study)["entry"][0]["resource"]
        model_class("R4", "ImagingStudy").model_validate(before)
        assert {s["uid"] for s in before["series"]} == {
            str(dcmread(p, stop_before_pixels=True).SeriesInstanceUID) for p in first
        }

        # Later, an extra series of the same study (a copy of one slice under new UIDs).
        extra = dcmread(first[0])
        extra.SeriesInstanceUID, extra.SOPInstanceUID, extra.SeriesNumber = new_uid(), new_uid(), 7
        extra.SeriesDescription = "Added later"
        extra.file_meta.MediaStorageSOPInstanceUID = extra.SOPInstanceUID
        extra.save_as(tmp_path / "extra.dcm", enforce_file_format=True)
        storescu(port, [tmp_path / "extra.dcm"])
        wait_for(lambda: counts() == (3, 7), timeout=DEBOUNCE + 20, what="the extra series in the ImagingStudy")
        after = search(base, study)["entry"][0]["resource"]
        assert int(after["meta"]["versionId"]) > int(before["meta"]["versionId"])
        assert after["meta"]["lastUpdated"] > before["meta"]["lastUpdated"]
        assert after["series"][-1]["description"] == "Added later" and after["series"][-1]["number"] == 7
        assert services.repository.dead_letters() == []
