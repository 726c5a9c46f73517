"""The servers under test, each started on 127.0.0.1 with fresh storage and free ports, and stopped for sure."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import httpx

from bench.debian import Tools
from bench.system import free_port, spawn, stop_tree, wait_idle

# "gateway-nosync" (not run unless named with --only) is the gateway with GATEWAY_STORAGE_SYNC=false:
# the same durability as the tuned Orthanc ("SyncStorageArea": false), to tell fsync cost from the rest.
SERVER_NAMES = ("gateway", "gateway-nosync", "orthanc-packaged", "orthanc-tuned", "storescp")
DEFAULT_SERVER_NAMES = ("gateway", "orthanc-packaged", "orthanc-tuned", "storescp")
ANCHOR = "orthanc-tuned"  # issue #6: every ratio is taken against the tuned Orthanc
START_TIMEOUT = 90.0
SETTLE_TIMEOUT = 30.0
# storescp's PDU matches the gateway's default maximum (GATEWAY_MAX_PDU), so the upper bound is like for like.
STORESCP_MAX_PDU = 131072


def parse_gateway_env(pairs: list[str] | None) -> dict[str, str]:
    """GATEWAY_NAME=VALUE pairs (the --gateway-env options) as a dict; raises ValueError naming a bad one."""
    settings = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("GATEWAY_"):
            raise ValueError(f"expected GATEWAY_NAME=VALUE, got {pair!r}")
        settings[name] = value
    return settings


def clean_environment() -> dict[str, str]:
    """Our environment without GATEWAY_* settings (a developer's shell must not change what is measured)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_") and k != "TCP_NODELAY"}


def _empty_files(path: Path) -> None:
    """Truncate every file at or under `path` to zero bytes (their data, dirty pages too, is freed at once)."""
    if not path.is_dir():
        files = [os.fspath(path)]
    else:
        files = [os.path.join(folder, name) for folder, _, names in os.walk(path) for name in names]
    for file in files:
        with contextlib.suppress(OSError):
            if not os.path.islink(file):
                os.truncate(file, 0)


class ServerFailed(RuntimeError):
    """A server did not start, or died while measured; the message ends with the tail of its log."""


class Server(ABC):
    """One running instance of a server under test; `start()` it, measure, then `stop()` it."""

    name: str
    ae_title: str
    web_root: str | None = None  # DICOMweb path prefix, None for a DIMSE-only server

    def __init__(self, tools: Tools, work: Path) -> None:
        self.tools = tools
        self.work = work  # a fresh folder for this instance alone: storage, config, log
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.log_path = work / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """DICOMweb base URL, e.g. http://127.0.0.1:8080/dicomweb."""
        assert self.web_root is not None
        return f"http://127.0.0.1:{self.http_port}{self.web_root}"

    @abstractmethod
    def command(self) -> tuple[list[str], dict[str, str]]:
        """argv and environment that start this server in `self.work`."""

    def http_ready(self, client: httpx.Client) -> bool:
        return True

    def start(self) -> None:
        """Start the server and wait until it answers C-ECHO (and HTTP when it has it); raise ServerFailed."""
        # Every server starts on a quiet disk: what the servers before it wrote and deleted (storescp's
        # and the no-fsync servers' unflushed files, the deleted storage) is written back now, not by
        # the journal commits of this server's fsyncs, which it would slow down by a varying amount.
        os.sync()
        self.work.mkdir(parents=True, exist_ok=True)
        argv, env = self.command()
        with open(self.log_path, "ab") as log:
            self.process = spawn(argv, env, log, cwd=self.work)
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                self.check_alive()
                try:
                    if self.http_ready(client) and self.echo():
                        # A server answers before all of its start-up is done (the gateway's Celery pool,
                        # imports in each process): measure it once that work has finished, not during.
                        assert self.process is not None
                        wait_idle(self.process.pid, SETTLE_TIMEOUT)
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        raise ServerFailed(f"{self.name} did not become ready in {START_TIMEOUT:.0f} s\n{self.log_tail()}")

    def echo(self) -> bool:
        """C-ECHO with DCMTK's echoscu: the SCP accepts associations."""
        assert self.tools.echoscu is not None
        result = subprocess.run(
            [self.tools.echoscu, "-to", "5", "-aec", self.ae_title, "127.0.0.1", str(self.dicom_port)],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TCP_NODELAY": "1"},
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def check_alive(self) -> None:
        """Raise ServerFailed when the server has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise ServerFailed(f"{self.name} exited with status {self.process.returncode}\n{self.log_tail()}")

    def stop(self, keep_inodes: bool = False) -> None:
        """Stop the whole process tree and free the storage's bytes (the log is kept in `self.work`).

        `keep_inodes`: empty every file instead of deleting it (see bench/runner.py); the caller deletes
        the folder later.
        """
        if self.process is not None:
            stop_tree(self.process)
        for child in self.work.iterdir() if self.work.exists() else []:
            if child == self.log_path:
                continue
            if keep_inodes:
                _empty_files(child)
            elif child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def searchable_instances(self, client: httpx.Client) -> int:
        """How many instances QIDO-RS /studies counts now (sum of NumberOfStudyRelatedInstances)."""
        response = client.get(
            f"{self.base_url}/studies",
            params={"includefield": "00201208"},
            headers={"Accept": "application/dicom+json"},
        )
        if response.status_code == 204:  # PS3.18: no match
            return 0
        response.raise_for_status()
        studies: list[dict[str, Any]] = response.json()
        return sum(int(s.get("00201208", {}).get("Value", [0])[0]) for s in studies)


class Gateway(Server):
    """`dicom-gateway serve` on its embedded defaults: SQLite, local folder, embedded Redis, Celery workers."""

    name = "gateway"
    ae_title = "DICOMGW"
    web_root = "/dicomweb"

    def __init__(self, tools: Tools, work: Path, settings: dict[str, str] | None = None) -> None:
        super().__init__(tools, work)
        self.settings = settings or {}  # GATEWAY_* overrides for experiments (bench --gateway-env)

    def command(self) -> tuple[list[str], dict[str, str]]:
        script = Path(sys.executable).parent / "dicom-gateway"
        argv = [str(script), "serve"] if script.exists() else [sys.executable, "-m", "gateway", "serve"]
        env = clean_environment()
        env.update(
            GATEWAY_DATA_DIR=str(self.work / "data"),
            GATEWAY_DICOM_HOST="127.0.0.1",
            GATEWAY_DICOM_PORT=str(self.dicom_port),
            GATEWAY_HTTP_HOST="127.0.0.1",
            GATEWAY_HTTP_PORT=str(self.http_port),
        )
        env.update(self.settings)
        return argv, env

    def http_ready(self, client: httpx.Client) -> bool:
        return client.get(f"http://127.0.0.1:{self.http_port}/readyz").status_code == 200


class Orthanc(Server):
    """Orthanc with its DICOMweb plugin and the default SQLite index, as packaged or tuned."""

    ae_title = "ORTHANC"
    web_root = "/dicom-web"

    def __init__(self, tools: Tools, work: Path, tuned: bool) -> None:
        super().__init__(tools, work)
        self.tuned = tuned
        self.name = "orthanc-tuned" if tuned else "orthanc-packaged"

    def config(self) -> dict[str, Any]:
        """Orthanc's JSON configuration: only what a bench needs; every other option keeps its default."""
        config: dict[str, Any] = {
            "Name": self.name,
            "StorageDirectory": str(self.work / "storage"),
            "IndexDirectory": str(self.work / "index"),
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [self.tools.dicomweb_plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        if self.tuned:
            # An informed admin's choice (issue #6): no fsync per instance; the index stays SQLite.
            config["SyncStorageArea"] = False
        return config

    def command(self) -> tuple[list[str], dict[str, str]]:
        assert self.tools.orthanc is not None
        config_path = self.work / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        env = clean_environment()
        if self.tuned:
            # Debian's DCMTK leaves Nagle's algorithm on without it: each C-STORE response then waits ~40 ms.
            env["TCP_NODELAY"] = "1"
        return [self.tools.orthanc, str(config_path)], env

    def http_ready(self, client: httpx.Client) -> bool:
        return client.get(f"http://127.0.0.1:{self.http_port}/system").status_code == 200


class Storescp(Server):
    """DCMTK storescp writing every instance to disk, one process per association: the native upper bound."""

    name = "storescp"
    ae_title = "STORESCP"

    def command(self) -> tuple[list[str], dict[str, str]]:
        assert self.tools.storescp is not None
        out = self.work / "storage"
        out.mkdir(parents=True, exist_ok=True)
        env = clean_environment()
        env["TCP_NODELAY"] = "1"
        argv = [
            self.tools.storescp,
            "--fork",  # one process per association, so 4 associations run in parallel
            "+xa",  # accept every transfer syntax
            "-pdu",
            str(STORESCP_MAX_PDU),
            "-od",
            str(out),
            str(self.dicom_port),
        ]
        return argv, env

    def searchable_instances(self, client: httpx.Client) -> int:
        raise NotImplementedError("storescp has no query interface")


def make_server(name: str, tools: Tools, work: Path, gateway_settings: dict[str, str] | None = None) -> Server:
    """A not yet started server of kind `name` (one of SERVER_NAMES) working in `work`."""
    if name == "gateway":
        return Gateway(tools, work, gateway_settings)
    if name == "gateway-nosync":
        server = Gateway(tools, work, {**(gateway_settings or {}), "GATEWAY_STORAGE_SYNC": "false"})
        server.name = "gateway-nosync"
        return server
    if name == "orthanc-packaged":
        return Orthanc(tools, work, tuned=False)
    if name == "orthanc-tuned":
        return Orthanc(tools, work, tuned=True)
    if name == "storescp":
        return Storescp(tools, work)
    raise ValueError(f"unknown server {name!r}; choose from {', '.join(SERVER_NAMES)}")
