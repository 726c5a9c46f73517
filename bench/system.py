"""Processes and the machine: free ports, starting and stopping process trees, peak RSS, other processes' CPU."""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil

_PR_SET_PDEATHSIG = 1


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed out.

    The kernel may offer the same free port twice in a row: a server's DICOM and HTTP ports were once
    equal, and its HTTP requests went to its DICOM listener.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _die_with_bench() -> None:
    # If the bench is killed with SIGKILL its finally blocks never run: the kernel then stops the servers.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def spawn(
    argv: Sequence[str], env: Mapping[str, str], log: IO[bytes], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a server in its own session, so a Ctrl-C in the terminal reaches the bench only.

    The bench then stops the server itself, in order, and measures nothing half-stopped.
    """
    return subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_bench,
    )


def stop_tree(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the process, wait, then SIGKILL it and any descendant still alive: nothing is left behind."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _, alive = psutil.wait_procs(descendants, timeout=5)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants; raises psutil.Error when it is gone."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _tree_sum(pid: int, measure: Callable[[psutil.Process], float]) -> float:
    """`measure` summed over a process and all its descendants (0 when it is gone)."""
    try:
        processes = process_tree(pid)
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            total += measure(process)
        except psutil.Error:
            pass  # exited between listing and reading
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and all its descendants."""
    return _tree_sum(pid, lambda process: sum(process.cpu_times()[:2]))


def wait_idle(pid: int, timeout: float, window: float = 0.5, busy: float = 0.1) -> bool:
    """Wait until a process tree uses under `busy` of one core over `window` s; False after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = tree_cpu_seconds(pid)
        time.sleep(window)
        if tree_cpu_seconds(pid) - before < busy * window:
            return True
    return False


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes (0 when it is gone)."""
    return int(_tree_sum(pid, lambda process: process.memory_info().rss))


class PeakRss:
    """Samples the summed RSS of registered process trees every `interval` seconds in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self._pids: dict[int, int] = {}  # pid -> peak bytes
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def watch(self, pid: int) -> None:
        with self._lock:
            self._pids.setdefault(pid, 0)

    def peak(self, pid: int) -> int:
        """Return the peak seen for `pid` (sampling it once more first) and stop watching it."""
        self._sample(pid)
        with self._lock:
            return self._pids.pop(pid, 0)

    def _sample(self, pid: int) -> None:
        rss = tree_rss(pid)
        with self._lock:
            if pid in self._pids:
                self._pids[pid] = max(self._pids[pid], rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                pids = list(self._pids)
            for pid in pids:
                self._sample(pid)


def _own_cpu_seconds() -> float:
    """CPU seconds used so far by the bench and everything it started (live, or exited and reaped)."""
    me = psutil.Process()
    times = os.times()
    # Reaped children (storescu, wrk, stopped servers) are in our children_* counters; live ones are read directly.
    total = times.user + times.system + times.children_user + times.children_system
    for child in me.children(recursive=True):
        try:
            cpu = child.cpu_times()
            # A live child's own reaped children (a restarted worker, say) are in its children_* counters.
            total += cpu.user + cpu.system + cpu.children_user + cpu.children_system
        except psutil.Error:
            pass
    return total


def _busy_cpu_seconds() -> float:
    times = psutil.cpu_times()
    # Linux counts guest time inside user/nice already; steal (the hypervisor's other guests) is noise too.
    busy = times.user + times.nice + times.system
    return float(busy + sum(getattr(times, name, 0.0) for name in ("irq", "softirq", "steal")))


class OtherCpu:
    """Share of the machine's CPU that processes other than the bench and its servers used in a span.

    System busy time (including the hypervisor's steal) minus our own, over wall time × cores: near 0 %
    on a quiet machine; a large figure marks a run whose absolute numbers are not to be trusted
    (same-run ratios hold better).
    """

    def __init__(self) -> None:
        self._start_wall = time.monotonic()
        self._start_busy = _busy_cpu_seconds()
        self._start_own = _own_cpu_seconds()

    def share(self) -> float:
        """Return the share (0–1) since this object was made."""
        wall = (time.monotonic() - self._start_wall) * (psutil.cpu_count() or 1)
        others = (_busy_cpu_seconds() - self._start_busy) - (_own_cpu_seconds() - self._start_own)
        return max(0.0, others / wall) if wall > 0 else 0.0


def _first_line(argv: Sequence[str]) -> str:
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return lines[0] if lines else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_revision(repo: Path) -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' (modified)' if dirty else ''}"


def machine_info(orthanc: str | None, repo: Path) -> dict[str, str]:
    """What the figures were measured on: CPU, cores, memory, kernel and the versions of every server."""
    return {
        "cpu": _cpu_model(),
        "cores": f"{psutil.cpu_count()} logical, {psutil.cpu_count(logical=False) or '?'} physical",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "gateway": _git_revision(repo),
        "orthanc": _first_line([orthanc, "--version"]) if orthanc else "not installed",
        "dcmtk": _first_line(["storescu", "--version"]).replace("$dcmtk: ", "").rstrip(" $"),
        "wrk": _first_line(["wrk", "--version"]).split(" Copyright")[0],
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
    }
