"""`python -m workers`: run a Celery worker consuming the gateway's queues."""

from __future__ import annotations

import os
import sys

from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.logging import configure_logging
from gateway.queue import INDEX_QUEUE
from workers.celery_app import make_celery


def main() -> None:
    """Start a worker with the configured concurrency; exit with one line on a configuration error."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(2) from None
    if not settings.broker_url:
        sys.stderr.write("invalid setting GATEWAY_BROKER_URL: a worker needs a broker URL\n")
        raise SystemExit(2)
    configure_logging(settings.log_level, settings.log_format)
    # Lower our priority (inherited by the pool processes) below the SCP's and the API's: see worker_nice.
    os.nice(settings.worker_nice)
    app = make_celery(settings)
    app.worker_main(
        [
            "worker",
            f"--loglevel={settings.log_level}",
            f"--concurrency={settings.workers}",
            f"--queues={INDEX_QUEUE}",
            f"--hostname=gateway-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


if __name__ == "__main__":
    main()
