"""The SCP's index queue: each key is journaled locally, then published to the broker in batches by a thread.

Why: publishing one Celery task per instance puts a broker round trip (1–5 ms on a busy 2-core
machine, more than the durable write itself) on every C-STORE's critical path, and one index
transaction per instance on the workers. Here a C-STORE appends its key to a journal file (a
`write()` into the page cache) and returns; a publisher thread sends the keys gathered meanwhile as
one `gateway.index_batch` task, which the worker indexes in one transaction.

Nothing acknowledged is lost:
- a key is in the journal before the C-STORE succeeds, and leaves it only once the broker holds it;
- the journal survives a crash of this process (it is in the kernel's page cache, and fsynced about
  once a second — the same window as the embedded broker's `appendfsync everysec`), and the next
  process on the data dir publishes the keys of any journal no live process holds (flock);
- while the broker is down, the C-STORE path publishes synchronously, so peers get 0xA701 and
  nothing new is acknowledged; keys already journaled wait and are published when it is back.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Protocol

import structlog

from gateway.errors import QueueUnavailable

log = structlog.get_logger(__name__)

_SUFFIX = ".keys"


class BatchPublisher(Protocol):
    """What the journal needs from the broker side (CeleryQueue)."""

    def enqueue_index_batch(self, keys: list[str]) -> None: ...

    def check(self) -> None: ...


class JournaledIndexQueue:
    """A TaskQueue for the SCP: enqueue_index() journals and returns; a thread publishes in batches."""

    def __init__(
        self,
        publisher: BatchPublisher,
        journal_dir: Path,
        max_batch: int = 200,
        quiet: float = 0.05,
        fsync_interval: float = 1.0,
        hold: float = 2.0,
        max_pending: int = 2000,
    ) -> None:
        self.publisher = publisher
        self.journal_dir = journal_dir
        self.max_batch = max_batch  # keys per task: a publish spreads its keys over the workers
        self.max_pending = max(max_pending, max_batch)
        self.fsync_interval = fsync_interval
        # Receive first, index in the gaps. Keys are published once this process has received nothing
        # for `quiet` seconds (a push ended, or a lone instance), or once the oldest has waited `hold`
        # seconds under a steady push; a backlog of max_pending keys goes at once (it bounds memory and
        # one publish). Why: indexing an instance costs the workers ~0.7 ms of CPU, which during a push
        # on a 2-core machine is taken from the receive path; done right after the push, on cores it
        # left idle, the instances are searchable 0.1-0.5 s after the last store (bench), not up to
        # `hold` later. A full max_batch used to go at once: each SCP process of a 4-association push
        # reached 200 keys every ~0.8 s, and the workers indexed during the push (0.65 ms of their CPU
        # per instance within it). Each publish also costs the SCP 2-8 ms of GIL time (py-spy, 4
        # associations: 20 % of its CPU at 10 publishes/s) and each task the worker a transaction.
        self.quiet = quiet
        self.hold = hold
        self._pending: list[str] = []
        self._first_key_at = 0.0  # arrival of the oldest pending key (about, after a partial publish)
        self._last_key_at = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Event()  # set by every enqueue
        self._hurry = threading.Event()  # ends a gathering wait: set by close() and by a full backlog
        self._stopping = False
        self._healthy = False  # until a publish succeeds, enqueue_index() publishes synchronously
        self._dirty = False
        journal_dir.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{uuid.uuid4().hex}"
        self.path = journal_dir / f"{name}{_SUFFIX}"
        # Locked under another name, then renamed: another process's recovery only ever sees it locked.
        creating = journal_dir / f"{name}.new"
        self._fd = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(creating, self.path)
        self._recover()
        self._thread = threading.Thread(target=self._run, name="index-journal", daemon=True)
        self._thread.start()

    # -- producer side (the C-STORE path)

    def enqueue_index(self, key: str) -> None:
        """Journal `key` for publishing; raise QueueUnavailable when the broker is known to be down."""
        if not self._healthy:
            # Broker state unknown or down: publish this one now, so the peer learns of an outage.
            self.publisher.enqueue_index_batch([key])
            self._healthy = True
            return
        with self._lock:
            try:
                os.write(self._fd, f"{key}\n".encode())
            except OSError as exc:
                raise QueueUnavailable(f"cannot write the index journal {self.path}: {exc.strerror}") from exc
            now = time.monotonic()
            if not self._pending:
                self._first_key_at = now
            self._last_key_at = now
            self._pending.append(key)
            self._dirty = True
            if len(self._pending) >= self.max_pending:
                self._hurry.set()
        self._wake.set()

    def check(self) -> None:
        self.publisher.check()

    def pending(self) -> int:
        """Keys journaled but not yet published."""
        with self._lock:
            return len(self._pending)

    def close(self, timeout: float = 10.0) -> None:
        """Publish what is pending (for up to `timeout` s), stop the thread; an unpublished journal is kept."""
        self._stopping = True
        self._hurry.set()
        self._wake.set()
        self._thread.join(timeout)
        with self._lock:
            left = len(self._pending)
            os.fsync(self._fd)
            os.close(self._fd)
            if left == 0:
                self.path.unlink(missing_ok=True)
        if left:
            log.warning("index_journal.kept", keys=left, journal=str(self.path))

    # -- recovery of journals left by processes that stopped before publishing

    def _recover(self) -> None:
        recovered = 0
        for path in sorted(self.journal_dir.glob(f"*{_SUFFIX}")):
            if path == self.path:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # claimed and removed by another process meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process owns it
                with open(fd, "rb", closefd=False) as handle:
                    keys = [line.decode() for line in handle.read().splitlines() if line.strip()]
                if keys:
                    # Ours first (durably), then theirs removed: a crash in between only duplicates keys.
                    os.write(self._fd, "".join(f"{key}\n" for key in keys).encode())
                    os.fsync(self._fd)
                    self._pending.extend(keys)
                    recovered += len(keys)
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        if recovered:
            log.warning("index_journal.recovered", keys=recovered)
            self._wake.set()

    # -- the publisher thread

    def _gather(self) -> None:
        """Return when the pending keys should be published (see __init__), or at once when stopping."""
        while not self._stopping:
            with self._lock:
                if not self._pending or len(self._pending) >= self.max_pending:
                    return
                due = min(self._last_key_at + self.quiet, self._first_key_at + self.hold)
                # Cleared under the lock that enqueue_index() sets it under: no full backlog is missed;
                # close() sets it after _stopping, so a set cleared here is seen as _stopping below.
                self._hurry.clear()
                if self._stopping:
                    return
            wait = due - time.monotonic()
            if wait <= 0:
                return
            self._hurry.wait(wait)  # a key arriving meanwhile moves `due` on: checked again on waking

    def _run(self) -> None:
        last_fsync = time.monotonic()
        failures = 0
        while True:
            self._wake.wait(self.fsync_interval)
            self._gather()
            stopping = self._stopping
            self._wake.clear()
            with self._lock:
                gathered = len(self._pending)
            published = 0
            while True:
                with self._lock:
                    batch = self._pending[: self.max_batch]
                if not batch:
                    failures = 0
                    break
                if published >= gathered and len(batch) < self.max_batch and not stopping:
                    break  # what arrived during the publishes waits for the next gathering
                try:
                    started = time.monotonic()
                    self.publisher.enqueue_index_batch(batch)
                except QueueUnavailable as exc:
                    self._healthy = False
                    failures += 1
                    log.error("index_journal.publish_failed", keys=len(batch), reason=str(exc))
                    if stopping:
                        return
                    self._wake.wait(min(5.0, 0.2 * 2**failures))
                    break
                except Exception:  # a bug must not silently stop publishing: log it and retry later
                    log.exception("index_journal.publish_error", keys=len(batch))
                    self._wake.wait(1.0)
                    break
                failures = 0
                self._healthy = True
                published += len(batch)
                with self._lock:
                    del self._pending[: len(batch)]
                    self._first_key_at = max(self._first_key_at, started)  # the rest's wait starts about now
                    if not self._pending:
                        os.ftruncate(self._fd, 0)  # all published: the journal starts empty again
                        self._dirty = False
            now = time.monotonic()
            if self._dirty and now - last_fsync >= self.fsync_interval:
                os.fsync(self._fd)
                last_fsync = now
            if stopping:
                return
            if self.pending():
                self._wake.set()  # the rest is gathered at once (quiet, hold), not after fsync_interval
