"""settle_heap: start-up garbage is collected, then what lives on is left out of full collections."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway.runtime import settle_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_settle_heap_collects_cycles_then_freezes_the_survivors() -> None:
    first, second = _Node(), _Node()
    first.other, second.other = second, first  # a cycle only the cyclic collector frees
    garbage = weakref.ref(first)
    del first, second
    survivor = [_Node() for _ in range(1000)]

    settle_heap()

    assert garbage() is None, "start-up garbage is collected before freezing"
    assert gc.get_freeze_count() >= len(survivor)
    assert not any(gc.is_tracked(node) and node in gc.get_objects(generation=2) for node in survivor[:5])
