"""`python -m bench` on a tiny corpus with all four servers, so the benchmark cannot rot. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bench.debian import find_tools
from bench.servers import DEFAULT_SERVER_NAMES as SERVER_NAMES

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def _skip_without_dcmtk() -> None:
    tools = find_tools()
    if not (tools.storescu and tools.storescp and tools.echoscu):
        pytest.skip("DCMTK is not installed: apt-get install dcmtk")


def _skip_without_debian_packages() -> None:
    _skip_without_dcmtk()
    tools = find_tools()
    if not (tools.orthanc and tools.dicomweb_plugin):
        pytest.skip("orthanc is not installed: apt-get install orthanc orthanc-dicomweb")
    if not tools.wrk:
        pytest.skip("wrk is not installed: apt-get install wrk")


def test_bench_runs_every_server_on_a_tiny_corpus(tmp_path: Path) -> None:
    _skip_without_debian_packages()
    out = tmp_path / "result"
    started = time.time()
    command = [
        sys.executable,
        "-m",
        "bench",
        "--instances=8",
        "--studies=2",
        "--series-per-study=1",
        "--size=64",
        "--repetitions=1",
        "--duration=1",
        "--no-install",
        f"--corpus-dir={tmp_path / 'corpus'}",
        f"--out={out}",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    document = json.loads((tmp_path / "result.json").read_text())
    assert list(document["servers"]) == list(SERVER_NAMES)
    for server in SERVER_NAMES:
        for key in ("store_1_ips", "store_4_ips", "store_1_mbps", "store_4_mbps", "peak_rss_mb"):
            median = document["servers"][server][key]["median"]
            assert isinstance(median, int | float) and median > 0, (server, key, document["servers"][server][key])
    for server in ("gateway", "orthanc-packaged", "orthanc-tuned"):
        assert isinstance(document["servers"][server]["searchable_4_s"]["median"], int | float), server
        assert isinstance(document["servers"][server]["qido_rps"]["median"], int | float), server
    assert document["servers"]["storescp"]["qido_rps"]["notes"] == ["n/a: no DICOMweb"]
    # Storage emptied when each server stopped is deleted at the end of the run: nothing is left behind.
    assert not [p for p in Path(tempfile.gettempdir()).glob("dicom-gateway-bench-*") if started <= p.stat().st_mtime]

    table = (tmp_path / "result.md").read_text()
    header = table.splitlines()[0]
    assert all(server in header for server in SERVER_NAMES)
    assert "gateway / tuned Orthanc" in header
    assert all(server in result.stdout for server in SERVER_NAMES)


def test_cpu_split_prints_each_process_and_the_load(tmp_path: Path) -> None:
    _skip_without_dcmtk()
    command = [
        *(sys.executable, "-m", "bench.cpu", "--instances=8", "--size=64", "--associations=2", "--no-install"),
        f"--corpus-dir={tmp_path / 'corpus'}",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 5}
    assert any(name.startswith("python -m gateway scp") for name in rows), result.stdout
    assert "storescu (the load)" in rows and "everything" in rows, result.stdout
    assert "gateway: " in result.stdout and "inst/s with 2 association(s)" in result.stdout
    assert "after: total" in result.stdout and "during the push, per instance:" in result.stdout
