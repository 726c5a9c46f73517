"""The SCP's journaled index queue with a broker stand-in that can fail on demand."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from gateway.errors import QueueUnavailable
from gateway.index_journal import JournaledIndexQueue


class FakeBroker:
    """Records published batches; `down` makes every publish fail like an unreachable Redis."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.down = False
        self.lock = threading.Lock()

    def enqueue_index_batch(self, keys: list[str]) -> None:
        if self.down:
            raise QueueUnavailable("task broker unavailable: connection refused")
        with self.lock:
            self.batches.append(list(keys))

    def check(self) -> None:
        if self.down:
            raise QueueUnavailable("task broker unavailable")

    def published(self) -> list[str]:
        with self.lock:
            return [key for batch in self.batches for key in batch]


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def journal_lines(directory: Path) -> list[str]:
    return [line for path in directory.glob("*.keys") for line in path.read_text().splitlines()]


def test_keys_are_published_in_batches_and_the_journal_empties(tmp_path: Path) -> None:
    broker = FakeBroker()
    queue = JournaledIndexQueue(broker, tmp_path, quiet=0.05)
    keys = [f"s/r/{n}.dcm" for n in range(50)]
    for key in keys:
        queue.enqueue_index(key)
    wait_until(lambda: broker.published() == keys)
    assert broker.batches[0] == [keys[0]], "the first key is published at once, while the broker is unproven"
    assert len(broker.batches) < len(keys), "later keys travel together"
    wait_until(lambda: queue.pending() == 0)
    assert journal_lines(tmp_path) == []
    queue.close()
    assert list(tmp_path.glob("*.keys")) == []


class SlowBroker(FakeBroker):
    """Each publish blocks until the test lets it go, as a busy broker would."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def enqueue_index_batch(self, keys: list[str]) -> None:
        self.entered.set()
        if self.batches:  # the first, synchronous publish proves the broker
            self.release.wait(10)
        super().enqueue_index_batch(keys)


def test_keys_arriving_during_a_publish_wait_for_the_next_batch_and_go_in_tasks_of_max_batch(
    tmp_path: Path,
) -> None:
    broker = SlowBroker()
    queue = JournaledIndexQueue(broker, tmp_path, quiet=0.3, hold=0.5, max_batch=10)
    queue.enqueue_index("s/r/0.dcm")  # synchronous
    broker.entered.clear()
    queue.enqueue_index("s/r/1.dcm")
    assert broker.entered.wait(10), "the background publish started"
    during = [f"s/r/{n}.dcm" for n in range(2, 6)]
    for key in during:
        queue.enqueue_index(key)
    broker.release.set()
    wait_until(lambda: broker.published() == ["s/r/0.dcm", "s/r/1.dcm", *during])
    assert broker.batches == [["s/r/0.dcm"], ["s/r/1.dcm"], during], "one batch per gathering, not one per key"

    backlog = [f"s/r/b{n}.dcm" for n in range(25)]
    for key in backlog:
        queue.enqueue_index(key)
    wait_until(lambda: queue.pending() == 0)
    assert [len(batch) for batch in broker.batches[3:]] == [10, 10, 5], "tasks of at most max_batch keys"
    queue.close()


def test_a_full_task_waits_for_the_quiet_and_a_backlog_of_max_pending_goes_at_once(tmp_path: Path) -> None:
    broker = FakeBroker()
    queue = JournaledIndexQueue(broker, tmp_path, quiet=60.0, hold=60.0, max_batch=5, max_pending=12)
    queue.enqueue_index("s/r/0.dcm")  # synchronous: proves the broker
    keys = [f"s/r/{n}.dcm" for n in range(1, 13)]
    for key in keys[:11]:
        queue.enqueue_index(key)
    time.sleep(0.3)
    assert broker.batches == [["s/r/0.dcm"]], "11 keys, two full tasks: they wait while the push goes on"
    queue.enqueue_index(keys[11])  # the 12th pending key: the whole backlog goes, in tasks of 5
    wait_until(lambda: queue.pending() == 0)
    assert broker.batches == [["s/r/0.dcm"], keys[:5], keys[5:10], keys[10:]]
    queue.close()


def test_what_one_gathering_holds_goes_whole_the_last_partial_task_too(tmp_path: Path) -> None:
    broker = FakeBroker()
    # fsync_interval 60 s: a remainder left for "the next wake-up" would wait that long.
    queue = JournaledIndexQueue(broker, tmp_path, quiet=0.05, hold=60.0, max_batch=5, fsync_interval=60.0)
    queue.enqueue_index("s/r/0.dcm")
    keys = [f"s/r/{n}.dcm" for n in range(1, 13)]
    for key in keys:
        queue.enqueue_index(key)
    wait_until(lambda: queue.pending() == 0)
    assert broker.batches == [["s/r/0.dcm"], keys[:5], keys[5:10], keys[10:]]
    queue.close()


def trickle(queue: JournaledIndexQueue, keys: list[str], every: float) -> None:
    for key in keys:
        queue.enqueue_index(key)
        time.sleep(every)


def test_keys_wait_while_the_process_keeps_receiving_and_go_together_once_it_is_quiet(tmp_path: Path) -> None:
    broker = FakeBroker()
    queue = JournaledIndexQueue(broker, tmp_path, quiet=1.0, hold=60.0)
    queue.enqueue_index("s/r/0.dcm")  # synchronous: proves the broker
    keys = [f"s/r/{n}.dcm" for n in range(1, 21)]
    trickle(queue, keys, 0.05)
    assert broker.batches == [["s/r/0.dcm"]], "nothing is published while instances keep arriving"
    assert queue.pending() == 20
    wait_until(lambda: queue.pending() == 0)
    assert broker.batches == [["s/r/0.dcm"], keys], "once quiet, everything received goes as one batch"
    queue.close()


def test_under_a_steady_push_the_oldest_key_waits_at_most_the_hold(tmp_path: Path) -> None:
    broker = FakeBroker()
    queue = JournaledIndexQueue(broker, tmp_path, quiet=60.0, hold=0.3)
    queue.enqueue_index("s/r/0.dcm")
    keys = [f"s/r/{n}.dcm" for n in range(1, 31)]
    trickle(queue, keys, 0.05)  # 1.5 s: never quiet
    assert len(broker.batches) >= 3, "batches left while the push went on"
    published = broker.published()
    assert published == ["s/r/0.dcm", *keys[: len(published) - 1]], "in order, none lost"
    queue.close()  # publishes the rest at once, without waiting for the quiet
    assert broker.published() == ["s/r/0.dcm", *keys]


def test_unknown_broker_state_publishes_synchronously_and_refuses_when_down(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.down = True
    queue = JournaledIndexQueue(broker, tmp_path)
    with pytest.raises(QueueUnavailable):
        queue.enqueue_index("s/r/1.dcm")
    assert journal_lines(tmp_path) == [], "a refused key is not journaled: the caller compensates"
    broker.down = False
    queue.enqueue_index("s/r/2.dcm")
    assert broker.published() == ["s/r/2.dcm"]
    queue.close()


def test_outage_keeps_journaled_keys_refuses_new_ones_and_publishes_them_on_recovery(tmp_path: Path) -> None:
    broker = FakeBroker()
    queue = JournaledIndexQueue(broker, tmp_path, quiet=0.0)
    queue.enqueue_index("s/r/0.dcm")  # proves the broker
    broker.down = True
    queue.enqueue_index("s/r/1.dcm")  # journaled; its publish fails in the background
    wait_until(lambda: not queue._healthy)
    assert journal_lines(tmp_path) == ["s/r/1.dcm"]
    with pytest.raises(QueueUnavailable):
        queue.enqueue_index("s/r/2.dcm")  # peers now get "out of resources"
    broker.down = False
    wait_until(lambda: "s/r/1.dcm" in broker.published())
    wait_until(lambda: queue.pending() == 0)
    queue.enqueue_index("s/r/3.dcm")
    wait_until(lambda: "s/r/3.dcm" in broker.published())
    assert "s/r/2.dcm" not in broker.published()
    queue.close()


def test_a_journal_left_by_a_dead_process_is_published_by_the_next(tmp_path: Path) -> None:
    broker = FakeBroker()
    queue = JournaledIndexQueue(broker, tmp_path)
    queue.enqueue_index("s/r/0.dcm")
    broker.down = True
    queue.enqueue_index("s/r/1.dcm")
    queue.enqueue_index("s/r/2.dcm")
    queue.close(timeout=0.5)  # stops with keys unpublished, as a killed process would leave them
    assert sorted(journal_lines(tmp_path)) == ["s/r/1.dcm", "s/r/2.dcm"]
    broker.down = False
    successor = JournaledIndexQueue(broker, tmp_path)
    wait_until(lambda: {"s/r/1.dcm", "s/r/2.dcm"} <= set(broker.published()))
    wait_until(lambda: successor.pending() == 0)
    successor.close()
    assert list(tmp_path.glob("*.keys")) == []


def test_a_journal_held_by_a_live_process_is_left_alone(tmp_path: Path) -> None:
    broker = FakeBroker()
    first = JournaledIndexQueue(broker, tmp_path)
    first.enqueue_index("s/r/0.dcm")
    broker.down = True
    first.enqueue_index("s/r/1.dcm")
    second = JournaledIndexQueue(FakeBroker(), tmp_path)
    assert second.pending() == 0
    assert first.path.exists()
    broker.down = False
    wait_until(lambda: first.pending() == 0)
    first.close()
    second.close()
