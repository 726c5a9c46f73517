"""`dicom-gateway serve` as a user runs it: storescu in, studies out over HTTP, clean stop, data kept."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from pydicom import dcmread

from testdata.generate import generate_corpus
from tests.fixtures.gateway import wait_for
from tests.fixtures.servers import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK (storescu) is not installed"),
]


class Served:
    """A running `serve` and the ports it listens on."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        self.env.update(
            GATEWAY_DATA_DIR=str(data_dir),
            GATEWAY_DICOM_HOST="127.0.0.1",
            GATEWAY_DICOM_PORT=str(self.dicom_port),
            GATEWAY_HTTP_PORT=str(self.http_port),
        )
        self.log_path = log_path
        with open(log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve"], env=self.env, stdout=log_file, stderr=subprocess.STDOUT
            )
        self.url = f"http://127.0.0.1:{self.http_port}"

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError("serve exited:\n" + self.log_path.read_text()[-3000:])
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def studies(self) -> list[dict[str, object]]:
        response = httpx.get(f"{self.url}/dicomweb/studies", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/dicom+json")
        result: list[dict[str, object]] = response.json()
        return result

    def stop(self) -> list[psutil.Process]:
        """SIGTERM serve as a user's Ctrl-C would; return its descendants so the caller can check they are gone."""
        descendants = psutil.Process(self.process.pid).children(recursive=True)
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)
        return descendants


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "gateway-data"


def test_serve_ingests_storescu_and_lists_studies_then_stops_cleanly(tmp_path: Path, data_dir: Path) -> None:
    corpus = generate_corpus(tmp_path / "corpus")
    studies = {dcmread(p, stop_before_pixels=True).StudyInstanceUID for p in corpus}
    counts = Counter(str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in corpus)
    # The README's command: storescu with the association profile that proposes every file's own
    # transfer syntax (RLE and JPEG included), over the whole folder.
    profile = Path(__file__).resolve().parents[2] / "testdata" / "storescu.cfg"

    served = Served(data_dir, tmp_path / "serve.log")
    try:
        wait_for(served.ready, timeout=60, what="serve to become ready")
        # Indexing is background work: the workers (and their pool) run below the SCP's and API's priority.
        base = os.nice(0)
        workers, others = set(), set()
        for child in psutil.Process(served.process.pid).children(recursive=True):
            (workers if child.cmdline()[1:3] == ["-m", "workers"] else others).add(child.nice())
        assert workers == {min(19, base + 10)}, "the worker and its pool processes run at the lower priority"
        assert others == {base}, "the SCP, the API and Redis keep serve's priority"
        result = subprocess.run(
            [
                *("storescu", "-v", "-nh", "-xf", str(profile), "Default", "-aec", "DICOMGW", "+sd", "+r"),
                *("127.0.0.1", str(served.dicom_port), str(tmp_path / "corpus")),
            ],
            capture_output=True,
            text=True,
            env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"},
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("Received Store Response (Success)") == len(corpus), result.stderr

        def all_listed() -> bool:
            listed = {s["0020000D"]["Value"][0]: s["00201208"]["Value"][0] for s in served.studies()}  # type: ignore[index]
            return listed == counts

        wait_for(all_listed, timeout=30, what="every study in QIDO-RS with all its instances")

        # The SCP processes accept from one socket that serve holds: with one killed, the port still answers
        # at once (the other takes the associations), and serve starts a new one.
        scps = [
            c for c in psutil.Process(served.process.pid).children() if c.cmdline()[1:4] == ["-m", "gateway", "scp"]
        ]
        assert len(scps) == 2 and all("--listen-fd" in c.cmdline() for c in scps)

        def listens_for_dicom(process: psutil.Process) -> bool:
            return any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == served.dicom_port
                for c in process.net_connections(kind="tcp")
            )

        holders = {p.pid for p in psutil.Process(served.process.pid).children(recursive=True) if listens_for_dicom(p)}
        assert holders == {c.pid for c in scps}, "only the SCP processes hold the DICOM listening socket"
        scps[0].kill()
        scps[0].wait(10)
        for _ in range(3):
            echo = subprocess.run(
                ["echoscu", "-aec", "DICOMGW", "127.0.0.1", str(served.dicom_port)], capture_output=True, text=True
            )
            assert echo.returncode == 0, echo.stderr

        def restarted() -> bool:
            children = psutil.Process(served.process.pid).children()
            return sum(c.cmdline()[1:4] == ["-m", "gateway", "scp"] for c in children) == 2

        wait_for(restarted, timeout=30, what="serve to restart the killed SCP process")
    finally:
        descendants = served.stop()
    assert served.process.returncode == 0
    time.sleep(0.5)
    assert [p.pid for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert descendants, "serve should have started child processes"

    again = Served(data_dir, tmp_path / "serve2.log")
    try:
        wait_for(again.ready, timeout=60, what="serve to restart")
        assert {s["0020000D"]["Value"][0] for s in again.studies()} == studies  # type: ignore[index]
    finally:
        again.stop()
