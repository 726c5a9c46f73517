"""The loads: C-STORE with storescu, time until searchable, HTTP with wrk, whole-study retrieve with httpx.

Each function returns plain numbers; an endpoint the server does not have yet raises NotAvailable, so
the table shows "n/a" today and a figure as soon as the endpoint exists, with no change here.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

SUCCESS_LINE = "Received Store Response (Success)"
# PS3.18 answers of a server that lacks an endpoint: not found, method not allowed, not implemented.
NOT_AVAILABLE_STATUSES = (404, 405, 501)
DICOM_JSON = "application/dicom+json"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"'


class NotAvailable(Exception):
    """The server does not offer this (yet): the figure is "n/a", not an error."""


class LoadFailed(RuntimeError):
    """The load did not complete as it must (a store failed, wrk saw errors): the figure is an error."""


@dataclass(frozen=True)
class Ingest:
    seconds: float
    instances: int
    bytes: int

    @property
    def instances_per_second(self) -> float:
        return self.instances / self.seconds

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes / self.seconds / 1e6


def _storescu_env() -> dict[str, str]:
    # Without TCP_NODELAY Debian's DCMTK waits ~40 ms for a delayed ACK per C-STORE (DESIGN.md field notes).
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TCP_NODELAY": "1"}


def store(storescu: str, ae_title: str, port: int, files: Sequence[Path], associations: int, log_dir: Path) -> Ingest:
    """Send `files` with `associations` parallel storescu processes (disjoint, contiguous parts).

    Timed from the first start to the last exit, i.e. until every C-STORE response arrived.
    storescu exits 0 even when stores fail, so each log must count one Success per file.
    Raises LoadFailed.
    """
    bounds = [n * len(files) // associations for n in range(associations + 1)]
    parts = [list(files[a:b]) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    logs = [log_dir / f"storescu-{n}.log" for n in range(len(parts))]
    handles = [open(log, "wb") for log in logs]  # noqa: SIM115 - closed below, after every process exited
    try:
        start = time.monotonic()
        processes = [
            subprocess.Popen(
                [storescu, "-v", "-nh", "-aec", ae_title, "127.0.0.1", str(port), *map(str, part)],
                env=_storescu_env(),
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            for part, handle in zip(parts, handles, strict=True)
        ]
        codes = [p.wait() for p in processes]
        seconds = time.monotonic() - start
    finally:
        for handle in handles:
            handle.close()
    for part, log, code in zip(parts, logs, codes, strict=True):
        text = log.read_text(errors="replace")
        succeeded = text.count(SUCCESS_LINE)
        if code != 0 or succeeded != len(part):
            tail = "\n".join(text.splitlines()[-8:])
            raise LoadFailed(f"storescu exit {code}, {succeeded}/{len(part)} stores succeeded:\n{tail}")
    return Ingest(seconds, len(files), sum(p.stat().st_size for p in files))


def wait_searchable(count: Callable[[], int], expected: int, timeout: float, poll: float = 0.05) -> float:
    """Seconds until `count()` reaches `expected`, polling every `poll` s; raises LoadFailed after `timeout`."""
    start = time.monotonic()
    seen = -1
    while True:
        try:
            seen = count()
        except httpx.HTTPError:
            pass  # a busy server may time out a poll: keep polling until the deadline
        elapsed = time.monotonic() - start
        if seen >= expected:
            return elapsed
        if elapsed > timeout:
            raise LoadFailed(f"only {seen} of {expected} instances searchable after {timeout:.0f} s")
        time.sleep(poll)


@dataclass(frozen=True)
class HttpLoad:
    requests_per_second: float
    p50_ms: float
    p99_ms: float


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_LATENCY = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_ERRORS = re.compile(r"^\s*(Non-2xx or 3xx responses|Socket errors):.*$", re.MULTILINE)


def parse_wrk(output: str) -> HttpLoad:
    """Requests/s and p50/p99 latency from `wrk --latency` output; raises LoadFailed on errors."""
    errors = [m.group(0).strip() for m in _ERRORS.finditer(output)]
    if errors:
        raise LoadFailed("wrk saw " + "; ".join(errors))
    rps = _RPS.search(output)
    latencies = {pct: float(value) * _UNITS_MS[unit] for pct, value, unit in _LATENCY.findall(output)}
    if rps is None or "50" not in latencies or "99" not in latencies:
        raise LoadFailed(f"cannot read wrk output:\n{output[-800:]}")
    return HttpLoad(float(rps.group(1)), latencies["50"], latencies["99"])


def check_endpoint(client: httpx.Client, url: str, accept: str) -> httpx.Response:
    """One GET before loading an endpoint: NotAvailable when missing, LoadFailed when it fails otherwise."""
    response = client.get(url, headers={"Accept": accept})
    if response.status_code in NOT_AVAILABLE_STATUSES:
        raise NotAvailable(f"HTTP {response.status_code}")
    if response.status_code != 200:
        raise LoadFailed(f"GET {url}: HTTP {response.status_code} {response.text[:200]}")
    return response


def run_wrk(wrk: str, url: str, accept: str, connections: int, seconds: int) -> HttpLoad:
    """Load `url` with wrk for a bounded `seconds`; raises LoadFailed."""
    threads = min(2, connections)  # 2 cores: more wrk threads would only compete with the server
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    argv += ["-H", f"Accept: {accept}", url]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if result.returncode != 0:
        raise LoadFailed(f"wrk exit {result.returncode}: {result.stderr[-500:]}")
    return parse_wrk(result.stdout)


def retrieve_study(client: httpx.Client, url: str, min_seconds: float) -> float:
    """WADO-RS whole-study retrieve in MB/s: streams the multipart body, repeated for at least `min_seconds`.

    Raises NotAvailable or LoadFailed.
    """
    total = 0
    start = time.monotonic()
    rounds = 0
    while rounds < 1 or time.monotonic() - start < min_seconds:
        # identity: measure the server sending DICOM, not gzip (wrk does not ask for compression either).
        headers = {"Accept": MULTIPART_DICOM, "Accept-Encoding": "identity"}
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code in NOT_AVAILABLE_STATUSES:
                raise NotAvailable(f"HTTP {response.status_code}")
            if response.status_code != 200:
                raise LoadFailed(f"GET {url}: HTTP {response.status_code}")
            if not response.headers.get("content-type", "").startswith("multipart/related"):
                raise LoadFailed(f"GET {url}: content-type {response.headers.get('content-type')}")
            for chunk in response.iter_raw(1 << 20):
                total += len(chunk)
        rounds += 1
    return total / (time.monotonic() - start) / 1e6
