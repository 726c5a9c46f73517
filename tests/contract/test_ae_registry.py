"""The AE registry and association log, run on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from gateway.admin.ae_titles import AEAlreadyRegistered, AERegistry, InvalidAE, RemoteAETitle, UnknownAE
from gateway.admin.associations import PRUNE_EVERY, AssociationLog, AssociationSummary
from gateway.config import RemoteAESetting
from gateway.index.db import make_engine, make_session_factory, migrate


@pytest.fixture
def engine(index_url: str) -> Engine:
    engine = make_engine(index_url)
    migrate(engine)
    return engine


@pytest.fixture
def registry(engine: Engine) -> AERegistry:
    return AERegistry(make_session_factory(engine))


def test_add_get_update_remove(registry: AERegistry) -> None:
    added = registry.add(RemoteAETitle(" CT01 ", " 10.0.0.5 ", 104, "CT", frozenset({"store"})))
    assert added == RemoteAETitle("CT01", "10.0.0.5", 104, "CT", frozenset({"store"}))
    assert registry.get("CT01") == added and registry.find("ct01") is None  # AE titles are case-sensitive
    assert added.allows("store") and not added.allows("find")
    updated = registry.update("CT01", operations=["store", "find"], enabled=False, port=4242)
    assert (updated.operations, updated.enabled, updated.port) == (frozenset({"store", "find"}), False, 4242)
    assert not updated.allows("store")  # disabled entries may do nothing
    assert [entry.ae_title for entry in registry.list()] == ["CT01"]
    registry.remove("CT01")
    assert registry.list() == []


def test_errors(registry: AERegistry) -> None:
    registry.add(RemoteAETitle("CT01", "h", 104))
    with pytest.raises(AEAlreadyRegistered):
        registry.add(RemoteAETitle("CT01", "other", 105))
    with pytest.raises(UnknownAE):
        registry.get("NOBODY")
    with pytest.raises(UnknownAE):
        registry.update("NOBODY", port=1)
    with pytest.raises(UnknownAE):
        registry.remove("NOBODY")
    for bad, field in (
        (RemoteAETitle("", "h", 1), "ae_title"),
        (RemoteAETitle("A" * 17, "h", 1), "ae_title"),
        (RemoteAETitle("BAD\\AE", "h", 1), "ae_title"),
        (RemoteAETitle("OK", "bad host", 1), "host"),
        (RemoteAETitle("OK", "h", 0), "port"),
        (RemoteAETitle("OK", "h", 65536), "port"),
    ):
        with pytest.raises(InvalidAE) as error:
            registry.add(bad)
        assert error.value.parameter == field
    with pytest.raises(InvalidAE):
        registry.update("CT01", source="config")


def test_settings_are_applied_declaratively(registry: AERegistry) -> None:
    registry.add(RemoteAETitle("BYHAND", "h", 104))
    declared = [
        RemoteAESetting(ae_title="CT01", host="10.0.0.5", port=104, operations=["store"]),
        RemoteAESetting(ae_title="WS01", host="10.0.0.9", port=11112),
    ]
    first = registry.apply_settings(declared)
    assert (first.created, first.updated, first.removed) == (("CT01", "WS01"), (), ())
    assert registry.apply_settings(declared) == type(first)((), (), ())  # idempotent
    changed = registry.apply_settings([declared[0].model_copy(update={"port": 4242})])
    assert (changed.updated, changed.removed) == (("CT01",), ("WS01",))
    assert {entry.ae_title: entry.source for entry in registry.list()} == {"BYHAND": "admin", "CT01": "config"}
    registry.update("CT01", description="taken over by hand")
    assert registry.apply_settings([]).removed == ()  # no longer managed by the settings


def summary(result: str, reason: str = "") -> AssociationSummary:
    return AssociationSummary(
        datetime.now(UTC), 0.25, "127.0.0.1", 40000, "CT01", "DICOMGW", False, ("C-STORE",), 3, 4096, result, reason
    )


def test_association_log_keeps_recent_rows_and_counts(engine: Engine) -> None:
    log = AssociationLog(engine, keep=10)
    log.record(summary("released"))
    log.record(summary("rejected", "calling AE title not recognized"))
    log.record(summary("rejected", "calling AE title not recognized"))
    recent = log.recent(2)
    assert [item.result for item in recent] == ["rejected", "rejected"]
    assert recent[0].services == ("C-STORE",) and recent[0].bytes == 4096
    assert log.counters() == (1, {"calling AE title not recognized": 2})
    for _ in range(PRUNE_EVERY * 2):
        log.record(summary("released"))
    assert len(log.recent(1000)) == 10 + 3  # pruned to the newest 10 at write 200, then 3 more
    assert log.counters()[0] == 201  # counters are never pruned
