"""End to end: DCMTK pushes the corpus through the SCP; real workers index it; every object reads back as sent.

Runs on both object stores (local folder, SeaweedFS S3) and both index databases (SQLite, PostgreSQL).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from gateway.config import Settings
from gateway.index.models import Instance, Series, Study
from gateway.services import Services
from testdata.generate import generate_corpus, pydicom_test_files
from tests.fixtures.gateway import gateway_services, make_settings, running_scp, wait_for, worker_process
from tests.part10 import assert_same_content

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("dcmsend") is None, reason="DCMTK (dcmsend) is not installed"),
]


@dataclass(frozen=True)
class Expected:
    """What the corpus should turn into, computed from the files with pydicom."""

    path: Path
    key: str
    study: str
    series: str
    sop: str
    transfer_syntax: str
    frames: int


def expected_from(paths: list[Path]) -> list[Expected]:
    result = []
    for path in paths:
        ds = dcmread(path, stop_before_pixels=True)
        study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        result.append(
            Expected(
                path,
                f"{study}/{series}/{sop}.dcm",
                study,
                series,
                sop,
                str(ds.file_meta.TransferSyntaxUID),
                int(ds.get("NumberOfFrames", 1) or 1),
            )
        )
    return result


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    generate_corpus(folder / "synthetic")
    for path in pydicom_test_files():
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(params=["filesystem+sqlite", "s3+postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, broker_url: str) -> Settings:
    if request.param == "filesystem+sqlite":
        return make_settings(tmp_path / "data", broker_url=broker_url)
    s3 = request.getfixturevalue("s3_server")
    bucket = f"e2e-{tmp_path.name[-12:].lower().replace('_', '-')}"
    return make_settings(
        tmp_path / "data",
        broker_url=broker_url,
        index_url=request.getfixturevalue("postgres_url"),
        storage_url=f"s3://{bucket}?endpoint={s3.endpoint}&secure=false",
        s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key,
    )


@pytest.fixture
def pipeline(settings: Settings, tmp_path: Path) -> Iterator[tuple[Services, int]]:
    with (
        gateway_services(settings) as services,
        running_scp(services) as port,
        worker_process(settings, tmp_path / "worker.log"),
    ):
        yield services, port


def indexed(services: Services) -> dict[str, Instance]:
    with services.repository.sessions() as session:
        return {row.sop_instance_uid: row for row in session.scalars(select(Instance))}


def test_corpus_is_stored_as_sent_and_indexed(pipeline: tuple[Services, int], corpus: Path) -> None:
    services, port = pipeline
    files = sorted(p for p in corpus.rglob("*.dcm"))
    expected = expected_from(files)
    assert len(expected) >= 15
    result = subprocess.run(
        ["dcmsend", "-v", "-aec", "DICOMGW", "-dn", "+sd", "+r", "-nh", "127.0.0.1", str(port), str(corpus)],
        capture_output=True,
        text=True,
        env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: len(indexed(services)) == len(expected), timeout=90, what="every instance indexed")

    rows = indexed(services)
    for item in expected:
        stored = services.store.read(item.key)
        assert_same_content(stored, item.path)
        row = rows[item.sop]
        assert row.object_key == item.key
        # The transfer syntax DCMTK chose for the association (see assert_same_content) is what is indexed.
        assert (
            row.transfer_syntax_uid == dcmread(io.BytesIO(stored), stop_before_pixels=True).file_meta.TransferSyntaxUID
        )
        if row.frame_offsets is not None:
            assert len(row.frame_offsets) == item.frames, item.path
    with services.repository.sessions() as session:
        studies = {s.study_instance_uid: s for s in session.scalars(select(Study))}
        series = {s.series_instance_uid: s for s in session.scalars(select(Series))}
    assert set(studies) == {e.study for e in expected}
    for uid, study in studies.items():
        assert study.number_of_instances == sum(1 for e in expected if e.study == uid)
        assert study.number_of_series == len({e.series for e in expected if e.study == uid})
    for uid, one in series.items():
        assert one.number_of_instances == sum(1 for e in expected if e.series == uid)
