"""An SCP process killed with keys still in its index journal: the next SCP process publishes them all.

Real components: `python -m gateway scp` processes, a real redis-server (paused with SIGSTOP so that
publishing hangs, as on a stalled broker), pynetdicom as the sending modality.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from gateway.dimse import status
from tests.factories import make_dataset
from tests.fixtures.gateway import make_settings, queued_index_keys, settings_env
from tests.fixtures.servers import RedisServer, free_port, start_redis, stop_process

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, since the test pauses it."""
    server = start_redis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.process.send_signal(signal.SIGCONT)
        stop_process(server.process)


def start_scp(env: dict[str, str], log_path: Path, port: int) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "scp"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    ae = AE(ae_title="PROBE")
    ae.add_requested_context(Verification)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()[-3000:]
        assoc = ae.associate("127.0.0.1", port, ae_title="DICOMGW")
        if assoc.is_established:
            assoc.release()
            return process
        time.sleep(0.2)
    stop_process(process)
    raise AssertionError("the SCP did not start:\n" + log_path.read_text()[-3000:])


def send(port: int, count: int) -> list[str]:
    """Store `count` new CT instances on one association; return their object keys (all must succeed)."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOMGW")
    assert assoc.is_established
    keys = []
    try:
        for _ in range(count):
            ds = make_dataset(rows=16, columns=16)
            assert int(assoc.send_c_store(ds).Status) == status.SUCCESS
            keys.append(f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm")
    finally:
        assoc.release()
    return keys


def test_keys_journaled_before_a_crash_are_published_by_the_next_scp(tmp_path: Path, own_redis: RedisServer) -> None:
    port = free_port()
    settings = make_settings(
        tmp_path / "data", broker_url=own_redis.url(0), dicom_port=port, broker_timeout=30.0, scp_processes=1
    )
    env = settings_env(settings)
    subprocess.run([sys.executable, "-m", "gateway", "migrate"], env=env, check=True, capture_output=True)
    client = redis.Redis.from_url(own_redis.url(0))
    scp = start_scp(env, tmp_path / "scp.log", port)
    try:
        first = send(port, 1)  # published synchronously: the broker is proven
        assert queued_index_keys(client) == set(first)
        own_redis.process.send_signal(signal.SIGSTOP)  # a stalled broker: publishing hangs
        later = send(port, 5)  # journaled and acknowledged
        journals = list((tmp_path / "data" / "run" / "index-journal").glob("*.keys"))
        assert len(journals) == 1
        assert set(later) <= set(journals[0].read_text().split())
        os.kill(scp.pid, signal.SIGKILL)
        scp.wait()
    finally:
        stop_process(scp)
    own_redis.process.send_signal(signal.SIGCONT)
    successor = start_scp(env, tmp_path / "scp.log", port)
    try:
        deadline = time.monotonic() + 30
        while not set(first + later) <= queued_index_keys(client):
            assert time.monotonic() < deadline, f"missing {set(first + later) - queued_index_keys(client)}"
            time.sleep(0.1)
    finally:
        stop_process(successor)
    assert list((tmp_path / "data" / "run" / "index-journal").glob("*.keys")) == [], "published: journal removed"
    assert "index_journal.recovered" in (tmp_path / "scp.log").read_text()


def test_a_stop_asked_for_while_the_scp_warms_up_ends_in_the_orderly_shutdown(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    # The SCP accepts associations before its warm-up (the broker's first use) is done; a SIGTERM then
    # must not kill it outright with its journal open, but wait for the warm-up and shut down in order.
    port = free_port()
    settings = make_settings(
        tmp_path / "data", broker_url=own_redis.url(0), dicom_port=port, broker_timeout=30.0, scp_processes=1
    )
    env = settings_env(settings)
    subprocess.run([sys.executable, "-m", "gateway", "migrate"], env=env, check=True, capture_output=True)
    own_redis.process.send_signal(signal.SIGSTOP)  # the warm-up's first broker call hangs
    scp = start_scp(env, tmp_path / "scp.log", port)  # answers C-ECHO while it warms up
    try:
        journal_dir = tmp_path / "data" / "run" / "index-journal"
        assert len(list(journal_dir.glob("*.keys"))) == 1
        scp.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert scp.poll() is None, "the stop waits for the warm-up"
        own_redis.process.send_signal(signal.SIGCONT)
        assert scp.wait(60) == 0
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
        stop_process(scp)
    assert list(journal_dir.glob("*.keys")) == [], "closed in order: the empty journal removed"
