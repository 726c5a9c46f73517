"""Composition root: build every service from Settings once, and hand them to the edges as arguments."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import Engine

from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.index.db import make_engine, migrate
from gateway.index.repository import IndexRepository
from gateway.indexing import IndexingService
from gateway.ingest import IngestService
from gateway.queue import CeleryQueue
from gateway.storage.base import ObjectStore
from gateway.storage.factory import store_from_url

log = structlog.get_logger(__name__)


@dataclass
class Services:
    """The gateway's services, wired for one configuration."""

    settings: Settings
    engine: Engine
    repository: IndexRepository
    store: ObjectStore
    queue: CeleryQueue
    ingest: IngestService
    indexing: IndexingService

    def warm(self, index_writes: bool = True) -> None:
        """Load this process's lazy caches before its first request (the broker's sender; the index's
        write statements when `index_writes`). Best effort: an outage is logged here and reported by the
        first request that needs the service, as without warming.
        """
        steps = [("queue", self.queue.warm)]
        if index_writes:
            steps.append(("index", self.repository.warm))
        for name, warm in steps:
            try:
                warm()
            except GatewayError as exc:
                log.warning("services.not_warmed", service=name, reason=str(exc))

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()


def build_services(settings: Settings, broker_url: str | None = None, run_migrations: bool = False) -> Services:
    """Build the services for `settings`; `broker_url` overrides the settings' one (the embedded Redis)."""
    engine = make_engine(settings.resolved_index_url)
    if run_migrations:
        migrate(engine)
    access = settings.s3_access_key.get_secret_value() if settings.s3_access_key else None
    secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
    store = store_from_url(settings.resolved_storage_url, access, secret, sync=settings.storage_sync)
    repository = IndexRepository(engine)
    queue = CeleryQueue(settings, broker_url or settings.broker_url)
    return Services(
        settings=settings,
        engine=engine,
        repository=repository,
        store=store,
        queue=queue,
        ingest=IngestService(store, queue, settings.storage_prefix),
        indexing=IndexingService(store, repository, settings.storage_prefix),
    )
