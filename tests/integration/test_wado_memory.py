"""A WADO-RS retrieve of a study over 1 GB streams: the API process stays under 300 MB RSS."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from gateway.services import Services
from tests.factories import make_dataset, new_uid, to_part10_bytes
from tests.fixtures.gateway import gateway_services, make_settings, settings_env, wait_for
from tests.fixtures.servers import free_port, stop_process

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

INSTANCES = 11
FRAMES = 200  # 200 frames of 512x512x16 bit: 105 MB per instance, 1.15 GB per study
RSS_LIMIT = 300 << 20


def _fill(services: Services, study: str) -> int:
    series = new_uid()
    total = 0
    for number in range(1, INSTANCES + 1):
        ds = make_dataset(rows=512, columns=512, frames=FRAMES, study_uid=study, series_uid=series)
        ds.InstanceNumber = number
        data = to_part10_bytes(ds)
        total += len(data)
        services.indexing.index_object(services.ingest.ingest_file(data).key)  # the worker's step, inline
        del data, ds
    return total


def test_retrieving_a_1gb_study_keeps_the_api_under_300mb(tmp_path: Path, broker_url: str) -> None:
    port = free_port()
    settings = make_settings(tmp_path / "data", broker_url=broker_url, http_port=port, http_host="127.0.0.1")
    study = new_uid()
    with gateway_services(settings) as services:
        stored = _fill(services, study)
    assert stored > 1 << 30

    env = settings_env(settings)
    with open(tmp_path / "api.log", "wb") as log_file:
        api = subprocess.Popen(
            [sys.executable, "-m", "gateway", "api"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        process = psutil.Process(api.pid)
        while not done.is_set():
            try:
                peak = max(peak, process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=60, what="the API to start")
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        received = 0
        accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
        with httpx.stream("GET", f"{base}/dicomweb/studies/{study}", headers={"Accept": accept}, timeout=120) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw(1 << 20):
                received += len(chunk)
        done.set()
        sampler.join()
    finally:
        done.set()
        stop_process(api)
    assert received > stored  # every object plus the multipart framing
    log.warning("WADO-RS retrieve of %.2f GB: API peak RSS %.0f MB", received / 2**30, peak / 2**20)
    assert 0 < peak < RSS_LIMIT, f"API peak RSS {peak / 2**20:.0f} MB"
