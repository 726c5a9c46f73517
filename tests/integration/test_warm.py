"""Warming a process's services before its first request: real Redis and SQLite, nothing published or written."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import structlog
from sqlalchemy import func, select

from gateway.errors import QueueUnavailable
from gateway.index.db import make_engine, migrate
from gateway.index.models import Instance, Patient, Series, Study
from gateway.queue import INDEX_QUEUE, CeleryQueue
from gateway.services import Services, build_services
from tests.fixtures.gateway import make_settings
from tests.fixtures.servers import free_port


def test_warming_the_queue_publishes_nothing_and_the_first_publish_still_arrives(
    tmp_path: Path, broker_url: str
) -> None:
    queue = CeleryQueue(make_settings(tmp_path), broker_url)
    client = redis.Redis.from_url(broker_url)
    queue.warm()
    assert client.llen(INDEX_QUEUE) == 0
    queue.enqueue_index_batch(["a/b/c.dcm"])
    assert client.llen(INDEX_QUEUE) == 1


def test_warming_the_queue_with_the_broker_down_raises_queue_unavailable(tmp_path: Path) -> None:
    queue = CeleryQueue(make_settings(tmp_path, broker_timeout=0.5), f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(QueueUnavailable, match="task broker unavailable"):
        queue.warm()


def warm_warnings(services: Services) -> dict[str, str]:
    """Warm `services`; return the reason logged for each service that was not warmed."""
    try:
        with structlog.testing.capture_logs() as logs:
            services.warm()
        return {entry["service"]: entry["reason"] for entry in logs if entry["event"] == "services.not_warmed"}
    finally:
        services.close()


def test_services_warm_with_the_broker_down_logs_why_and_still_warms_the_index(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", broker_timeout=0.5)
    migrate(make_engine(settings.resolved_index_url))
    services = build_services(settings, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    warnings = warm_warnings(services)
    assert list(warnings) == ["queue"]
    assert "task broker unavailable" in warnings["queue"]
    with services.repository.sessions() as session:
        rows = [session.scalar(select(func.count()).select_from(m)) for m in (Patient, Study, Series, Instance)]
    assert rows == [0, 0, 0, 0]


def test_services_warm_before_migrations_logs_the_index_as_not_ready(tmp_path: Path, broker_url: str) -> None:
    warnings = warm_warnings(build_services(make_settings(tmp_path / "data"), broker_url=broker_url))
    assert list(warnings) == ["index"]
    assert "index database not ready" in warnings["index"]
