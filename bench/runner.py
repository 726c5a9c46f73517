"""One bench run: every repetition starts each server fresh, applies the same loads, and records the figures.

Servers are interleaved within a repetition (gateway, Orthanc, Orthanc, storescp, then again), so a
noisy minute on the shared machine hits every column instead of one.

When a server stops, its files are emptied (truncated to zero bytes) and deleted only at the end of the
run. On ext4 without a journal (this machine's root file system) a new inode is looked for past every
inode deleted in the last 1-6 minutes, one inode table lookup each: after a few thousand deletions,
creating a file cost 0.3-1 ms of kernel CPU instead of ~0.04 ms (perf: recently_deleted,
find_inode_bit, find_get_block_common), a cost of the bench, not of the servers.
Keeping the files whole instead was worse: the disk then writes back gigabytes of the servers that do
not fsync while the next server is measured (the 4-association ingest of the gateway fell to 0.85x).
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress, TaskID

from bench import loads
from bench.corpus import Corpus
from bench.debian import Tools
from bench.results import Results
from bench.servers import Server, ServerFailed, make_server
from bench.system import OtherCpu, PeakRss

HTTP_TIMEOUT = 60.0


@dataclass(frozen=True)
class Options:
    servers: list[str]
    repetitions: int
    duration: int  # seconds per wrk run
    connections: int
    searchable_timeout: float
    keep_work: bool
    gateway_settings: dict[str, str] = field(default_factory=dict)  # GATEWAY_* overrides; empty = defaults


class Run:
    """The state of one run: where servers work, what was measured, and the progress bar."""

    def __init__(self, options: Options, tools: Tools, corpus: Corpus, console: Console) -> None:
        self.options = options
        self.tools = tools
        self.corpus = corpus
        self.console = console
        self.results = Results(list(options.servers))
        self.work = Path(tempfile.mkdtemp(prefix="dicom-gateway-bench-"))

    def measure(self, server: str, keys: list[str], action: Callable[[], list[float]]) -> bool:
        """Run `action` and record its figures under `keys`; n/a and failures become notes. True on success."""
        try:
            values = action()
        except loads.NotAvailable as exc:
            for key in keys:
                self.results.note(server, key, f"n/a: {exc}")
            return False
        except (loads.LoadFailed, httpx.HTTPError) as exc:
            self.console.print(f"[red]{server} {keys[0]} failed:[/] {exc}")
            for key in keys:
                self.results.note(server, key, f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            return False
        for key, value in zip(keys, values, strict=True):
            self.results.add(server, key, value)
        return True

    @contextmanager
    def started(self, name: str, label: str, rss: PeakRss, peaks: list[float]) -> Iterator[Server]:
        """A fresh server of kind `name` for the span of the block; its peak RSS (MB) is appended to `peaks`."""
        server = make_server(name, self.tools, self.work / label, self.options.gateway_settings)
        try:
            server.start()
            assert server.process is not None
            rss.watch(server.process.pid)
            yield server
            server.check_alive()  # a server that died under load must not pass as measured
        finally:
            if server.process is not None:
                peaks.append(rss.peak(server.process.pid) / 1e6)
            server.stop(keep_inodes=True)

    def ingest(self, server: Server, associations: int) -> None:
        """C-STORE every instance with `associations` storescu processes, then time until searchable."""
        assert self.tools.storescu is not None
        key = f"store_{associations}"
        log_dir = server.work
        result: list[loads.Ingest] = []

        def send() -> list[float]:
            ingest = loads.store(
                self.tools.storescu or "storescu",
                server.ae_title,
                server.dicom_port,
                self.corpus.files,
                associations,
                log_dir,
            )
            result.append(ingest)
            return [ingest.instances_per_second, ingest.megabytes_per_second]

        stored = self.measure(server.name, [f"{key}_ips", f"{key}_mbps"], send)
        searchable = f"searchable_{associations}_s"
        if server.web_root is None:
            self.results.note(server.name, searchable, "n/a: no query interface")
        elif stored:
            with httpx.Client(timeout=HTTP_TIMEOUT) as client:
                expected = len(self.corpus.files)

                def count() -> int:
                    return server.searchable_instances(client)

                self.measure(
                    server.name,
                    [searchable],
                    lambda: [loads.wait_searchable(count, expected, self.options.searchable_timeout)],
                )

    def http_loads(self, server: Server, progress: Progress, task: TaskID) -> None:
        """QIDO-RS, WADO-RS metadata and retrieve against a server holding the whole corpus."""
        keys = ("qido", "qido_patient", "metadata")
        if server.web_root is None:
            for prefix in keys:
                for suffix in ("rps", "p50_ms", "p99_ms", "serial_ms"):
                    self.results.note(server.name, f"{prefix}_{suffix}", "n/a: no DICOMweb")
            self.results.note(server.name, "retrieve_mbps", "n/a: no DICOMweb")
            return
        corpus = self.corpus
        study = f"{server.base_url}/studies/{corpus.metadata_study_uid}"
        urls = {
            "qido": (f"{server.base_url}/studies", loads.DICOM_JSON, len(corpus.study_uids)),
            "qido_patient": (
                f"{server.base_url}/studies?PatientID={corpus.patient_id}",
                loads.DICOM_JSON,
                corpus.patient_studies,
            ),
            "metadata": (f"{study}/metadata", loads.DICOM_JSON, corpus.metadata_study_instances),
        }
        with httpx.Client(timeout=HTTP_TIMEOUT) as client:
            for prefix, (url, accept, expected) in urls.items():
                progress.update(task, description=f"{server.name}: {prefix} (wrk)")
                self.measure(
                    server.name,
                    [f"{prefix}_rps", f"{prefix}_p50_ms", f"{prefix}_p99_ms", f"{prefix}_serial_ms"],
                    functools.partial(self._wrk, client, url, accept, expected, prefix),
                )
            progress.update(task, description=f"{server.name}: whole-study retrieve")
            self.measure(
                server.name,
                ["retrieve_mbps"],
                lambda: [loads.retrieve_study(client, study, min_seconds=float(self.options.duration))],
            )

    def _wrk(self, client: httpx.Client, url: str, accept: str, expected: int, what: str) -> list[float]:
        response = loads.check_endpoint(client, url, accept)
        answered = len(response.json()) if response.content else 0
        if answered != expected:
            if what == "qido_patient" and answered == len(self.corpus.study_uids):
                raise loads.NotAvailable("PatientID matching not supported (every study returned)")
            raise loads.LoadFailed(f"GET {url}: {answered} results, expected {expected}")
        assert self.tools.wrk is not None
        loaded = loads.run_wrk(self.tools.wrk, url, accept, self.options.connections, self.options.duration)
        serial = loads.run_wrk(self.tools.wrk, url, accept, 1, self.options.duration)
        return [loaded.requests_per_second, loaded.p50_ms, loaded.p99_ms, serial.p50_ms]

    def server_repetition(self, name: str, repetition: int, rss: PeakRss, progress: Progress, task: TaskID) -> None:
        """Both ingests on fresh storage, then the HTTP loads on the second server, for one repetition."""
        peaks: list[float] = []
        other = OtherCpu()
        try:
            progress.update(task, description=f"{name}: C-STORE, 1 association")
            with self.started(name, f"{name}-r{repetition}-a1", rss, peaks) as server:
                self.ingest(server, 1)
            progress.advance(task)
            progress.update(task, description=f"{name}: C-STORE, 4 associations")
            with self.started(name, f"{name}-r{repetition}-a4", rss, peaks) as server:
                self.ingest(server, 4)
                self.http_loads(server, progress, task)
            progress.advance(task)
        except ServerFailed as exc:
            self.console.print(f"[red]{name} failed:[/] {exc}")
            self.results.note(name, "store_1_ips", f"error: {str(exc).splitlines()[0]}")
        if peaks:
            self.results.add(name, "peak_rss_mb", max(peaks))
        self.results.add(name, "other_cpu_pct", other.share() * 100)

    def run(self) -> Results:
        """Every repetition of every server; stops every server it started, also on Ctrl-C."""
        try:
            with PeakRss() as rss, Progress(console=self.console, transient=False) as progress:
                total = self.options.repetitions * len(self.options.servers) * 2
                task = progress.add_task("starting", total=total)
                for repetition in range(self.options.repetitions):
                    for name in self.options.servers:
                        progress.update(task, description=f"repetition {repetition + 1}: {name}")
                        self.server_repetition(name, repetition, rss, progress, task)
                progress.update(task, description="done")
        finally:
            if self.results.failures() or self.options.keep_work:
                self.console.print(f"server logs and storescu logs kept in {self.work}")
            else:
                shutil.rmtree(self.work, ignore_errors=True)
        return self.results


def parameters(corpus: Corpus, options: Options) -> dict[str, object]:
    """What was run, for the result files."""
    spec = corpus.spec
    return {
        "instances": spec.instances,
        "studies": len(corpus.study_uids),
        "series_per_study": spec.series_per_study,
        "size": spec.size,
        "corpus_mb": round(corpus.total_bytes / 1e6, 1),
        "metadata_study_instances": corpus.metadata_study_instances,
        "repetitions": options.repetitions,
        "wrk_seconds": options.duration,
        "wrk_connections": options.connections,
        "servers": ",".join(options.servers),
        "gateway_settings": " ".join(f"{k}={v}" for k, v in options.gateway_settings.items()) or "defaults",
    }
