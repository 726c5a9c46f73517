"""The `dicom-gateway` command line: parse, build services, run."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gateway.config import Settings, load_settings
from gateway.errors import ConfigError, GatewayError
from gateway.logging import configure_logging

app = typer.Typer(help="DICOM imaging gateway", no_args_is_help=True, add_completion=False)
console = Console(stderr=True, soft_wrap=True)
ConfigOption = Annotated[Path | None, typer.Option("--config", help="TOML settings file (GATEWAY_CONFIG)")]


def _settings(config: Path | None) -> Settings:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _broker_url(settings: Settings) -> str:
    """The configured broker, else the one a running `serve` published for this data dir."""
    from gateway.supervisor import broker_url_file

    if settings.broker_url:
        return settings.broker_url
    published = broker_url_file(settings)
    if published.is_file():
        return published.read_text().strip()
    console.print(
        "invalid setting GATEWAY_BROKER_URL: not set, and no `dicom-gateway serve` is running on "
        f"{settings.data_dir} (start it, or point GATEWAY_BROKER_URL at your Redis)",
        highlight=False,
    )
    raise typer.Exit(2)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Run everything on one machine: embedded Redis, Celery workers, the SCP and the HTTP API."""
    from gateway.index.db import make_engine, migrate
    from gateway.supervisor import Supervisor

    settings = _settings(config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_index_url)
    migrate(engine)
    engine.dispose()
    console.print(
        f"dicom-gateway: AE {settings.ae_title} on port {settings.dicom_port}, "
        f"HTTP on http://{settings.http_host}:{settings.http_port}, data in {settings.data_dir.resolve()}",
        highlight=False,
    )
    try:
        code = Supervisor(settings, config).run()
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        code = 2
    raise typer.Exit(code)


@app.command()
def scp(config: ConfigOption = None) -> None:
    """Run the DICOM SCP alone (C-ECHO, C-STORE)."""
    from gateway.dimse.server import start_scp
    from gateway.services import build_services

    settings = _settings(config)
    services = build_services(settings, broker_url=_broker_url(settings))
    server = start_scp(services, reuse_port=settings.scp_processes > 1)
    console.print(f"SCP {settings.ae_title} listening on {settings.dicom_host}:{settings.dicom_port}", highlight=False)
    try:
        _wait_for_signal()
    finally:
        server.shutdown()
        services.close()


@app.command()
def api(config: ConfigOption = None) -> None:
    """Run the HTTP API alone (DICOMweb, health, metrics)."""
    import uvicorn

    from gateway.api import create_app
    from gateway.services import build_services

    settings = _settings(config)
    services = build_services(settings, broker_url=_broker_url(settings))
    uvicorn.run(
        create_app(services), host=settings.http_host, port=settings.http_port, log_config=None, access_log=False
    )


@app.command()
def worker(config: ConfigOption = None) -> None:
    """Run Celery workers alone (the `workers` program; the gateway package does not import it)."""
    settings = _settings(config)
    env = dict(os.environ, GATEWAY_BROKER_URL=_broker_url(settings))
    if config is not None:
        env["GATEWAY_CONFIG"] = str(config.resolve())
    os.execve(sys.executable, [sys.executable, "-m", "workers"], env)


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Create or upgrade the index schema."""
    from gateway.index.db import make_engine
    from gateway.index.db import migrate as run_migrations

    settings = _settings(config)
    engine = make_engine(settings.resolved_index_url)
    run_migrations(engine)
    engine.dispose()
    console.print("index schema is up to date", highlight=False)


@app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Print the effective settings (secrets masked)."""
    settings = _settings(config)
    for name, value in sorted(settings.model_dump().items()):
        typer.echo(f"{name} = {value}")
    typer.echo(f"resolved_index_url = {settings.resolved_index_url}")
    typer.echo(f"resolved_storage_url = {settings.resolved_storage_url}")


def _files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


@app.command("import")
def import_files(
    paths: Annotated[list[Path], typer.Argument(help="files and folders (searched recursively)", exists=True)],
    config: ConfigOption = None,
) -> None:
    """Import DICOM files through the ingest path, with a progress bar and a summary."""
    from gateway.services import build_services

    settings = _settings(config)
    services = build_services(settings, broker_url=_broker_url(settings))
    files = list(_files(paths))
    outcome: Counter[str] = Counter()
    rejected: list[tuple[Path, str]] = []
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("import", total=len(files))
        for path in files:
            try:
                result = services.ingest.ingest_file(path.read_bytes())
                outcome["imported" if result.written else "already present"] += 1
            except (GatewayError, OSError) as exc:
                outcome["rejected"] += 1
                rejected.append((path, f"{type(exc).__name__}: {exc}"))
            progress.advance(task)
    services.close()
    for path, reason in rejected:
        console.print(f"rejected {path}: {reason}", highlight=False, markup=False, soft_wrap=True)
    typer.echo(
        f"imported {outcome['imported']}, already present {outcome['already present']}, rejected {outcome['rejected']}"
    )
    if outcome["rejected"]:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app()
