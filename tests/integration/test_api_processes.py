"""`dicom-gateway api` with api_processes > 1: several processes answer on one port, and none outlives `api`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fixtures.gateway import wait_for
from tests.fixtures.servers import free_port, stop_process

pytestmark = pytest.mark.integration


class Api:
    """A running `dicom-gateway api` on a fresh data dir."""

    def __init__(self, tmp_path: Path, broker_url: str, processes: int) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            GATEWAY_DATA_DIR=str(tmp_path / "data"),
            GATEWAY_BROKER_URL=broker_url,
            GATEWAY_HTTP_PORT=str(self.port),
            GATEWAY_API_PROCESSES=str(processes),
        )
        assert (
            subprocess.run([sys.executable, "-m", "gateway", "migrate"], env=env, capture_output=True).returncode == 0
        )
        self.log = tmp_path / "api.log"
        with open(self.log, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "api"], env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
        self.url = f"http://127.0.0.1:{self.port}"

    def answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError("api exited:\n" + self.log.read_text()[-3000:])
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def workers(self) -> list[psutil.Process]:
        """The processes that hold the listening HTTP socket (uvicorn's workers, not its supervisor)."""
        found = []
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in child.net_connections()):
                    found.append(child)
            except psutil.NoSuchProcess:
                continue
        return found


@pytest.fixture
def api(tmp_path: Path, broker_url: str) -> Iterator[Api]:
    running = Api(tmp_path, broker_url, processes=2)
    try:
        wait_for(running.answers, timeout=90, what="the API to answer")
        yield running
    finally:
        stop_process(running.process, timeout=30)


def _served_by(api: Api, workers: list[psutil.Process], sockets: list[socket.socket]) -> set[int]:
    """The worker pids holding the server side of the test's open connections."""
    ours = {s.getsockname()[1] for s in sockets}
    return {
        worker.pid
        for worker in workers
        for c in worker.net_connections()
        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == api.port and c.raddr and c.raddr.port in ours
    }


def _connect_to_every_worker(api: Api, request: bytes, status: bytes) -> list[socket.socket]:
    """Open connections, each after one answered `request`, until each worker holds one of them.

    The kernel hands a new connection to whichever worker accepts first, so a few may land on the same one.
    """
    workers = api.workers()
    assert len(workers) == 2
    sockets: list[socket.socket] = []
    for _ in range(64):
        conn = socket.create_connection(("127.0.0.1", api.port), timeout=10)
        sockets.append(conn)
        conn.sendall(request)
        assert conn.recv(65536).startswith(b"HTTP/1.1 " + status)
        if _served_by(api, workers, sockets) == {w.pid for w in workers}:
            return sockets
    for conn in sockets:
        conn.close()
    raise AssertionError("64 connections, and one worker answered none of them")


def test_several_processes_answer_on_one_port(api: Api) -> None:
    request = b"GET /dicomweb/studies HTTP/1.1\r\nHost: x\r\nAccept: application/dicom+json\r\n\r\n"
    for conn in _connect_to_every_worker(api, request, b"200"):
        conn.close()


def test_metrics_count_the_requests_of_every_process(api: Api) -> None:
    request = b"GET /dicomweb/studies?NoSuchKey=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    sockets = _connect_to_every_worker(api, request, b"400")
    for conn in sockets:
        conn.close()
    text = httpx.get(f"{api.url}/metrics", timeout=10).text
    assert f'gateway_http_requests_total{{method="GET",status="400"}} {float(len(sockets))}' in text


def test_sigterm_stops_every_process(api: Api) -> None:
    descendants = psutil.Process(api.process.pid).children(recursive=True)
    assert len(descendants) >= 2
    api.process.send_signal(signal.SIGTERM)
    assert api.process.wait(30) == 0
    _, alive = psutil.wait_procs(descendants, timeout=15)
    assert not alive


def test_workers_do_not_outlive_a_killed_api(api: Api) -> None:
    assert len(api.workers()) == 2
    descendants = psutil.Process(api.process.pid).children(recursive=True)
    api.process.kill()  # no chance to stop its workers: the kernel's parent-death signal must do it
    api.process.wait(10)
    _, alive = psutil.wait_procs(descendants, timeout=30)
    for process in alive:
        process.kill()
    assert not alive
