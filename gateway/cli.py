"""The `dicom-gateway` command line: parse, build services, run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import structlog
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gateway.config import ALL_OPERATIONS, Operation, Settings, load_settings
from gateway.errors import ConfigError, GatewayError
from gateway.logging import configure_logging
from gateway.runtime import settle_heap

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy import Engine

    from gateway.admin.ae_titles import AERegistry

log = structlog.get_logger(__name__)
app = typer.Typer(help="DICOM imaging gateway", no_args_is_help=True, add_completion=False)
ae_app = typer.Typer(help="Manage the remote AE registry (who may store, query and retrieve)", no_args_is_help=True)
app.add_typer(ae_app, name="ae")
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


def _apply_declared_aes(settings: Settings, engine: Engine) -> None:
    """Bring the AE registry in line with the settings' `remote_aes` list (idempotent; every process may do it)."""
    from gateway.admin.ae_titles import AERegistry
    from gateway.index.db import make_session_factory

    applied = AERegistry(make_session_factory(engine)).apply_settings(settings.remote_aes)
    if applied.created or applied.updated or applied.removed:
        log.info(
            "ae.settings_applied",
            created=",".join(applied.created),
            updated=",".join(applied.updated),
            removed=",".join(applied.removed),
        )


def _stop_requested() -> threading.Event:
    """An event that SIGTERM and SIGINT set. Installed before start-up work, so that a stop asked for
    while the process still warms up (it already accepts associations) ends in the orderly shutdown."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Run everything on one machine: embedded Redis, Celery workers, the SCP and the HTTP API."""
    from gateway.index.db import make_engine, migrate
    from gateway.supervisor import Supervisor

    settings = _settings(config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_index_url)
    migrate(engine)
    _apply_declared_aes(settings, engine)
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


ListenFdOption = Annotated[
    int | None,
    typer.Option(help="Accept from this inherited listening socket instead of binding the port (serve passes it)."),
]


@app.command()
def scp(config: ConfigOption = None, listen_fd: ListenFdOption = None, tls_listen_fd: ListenFdOption = None) -> None:
    """Run the DICOM SCP alone (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET; and DICOM TLS when tls_port is set)."""
    from gateway.dimse.server import inherited_listener, start_scp
    from gateway.index_journal import JournaledIndexQueue
    from gateway.ingest import IngestService
    from gateway.services import build_services

    settings = _settings(config)
    services = build_services(settings, broker_url=_broker_url(settings))
    _apply_declared_aes(settings, services.engine)
    # Received instances are journaled here and published to the workers in batches (index_journal.py).
    journal = JournaledIndexQueue(
        services.queue,
        settings.data_dir.resolve() / "run" / "index-journal",
        hold=settings.index_batch_interval,
    )
    services.ingest = IngestService(services.store, journal, settings.storage_prefix)
    stop = _stop_requested()
    servers = []
    try:
        try:
            listener = inherited_listener(listen_fd) if listen_fd is not None else None
            servers.append(start_scp(services, listener=listener))
            if settings.tls_port:
                tls_listener = inherited_listener(tls_listen_fd) if tls_listen_fd is not None else None
                servers.append(start_scp(services, tls=True, listener=tls_listener))
        except ConfigError as exc:
            console.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(2) from None
        listening = f"{settings.dicom_host}:{settings.dicom_port}"
        if settings.tls_port:
            listening += f" and {settings.dicom_host}:{settings.tls_port} (TLS)"
        console.print(f"SCP {settings.ae_title} listening on {listening}", highlight=False)
        services.warm(index_writes=False)  # the first C-STORE publishes at once: not with Celery's first-use cost
        settle_heap()
        stop.wait()
    finally:
        for server in servers:
            server.shutdown()
        journal.close()
        services.close()


_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when a worker first imports it
_METRICS_PREFIX = "dicom-gateway-metrics-"


def _remove_orphan_metrics_dirs() -> None:
    """Remove metrics folders left by an `api` that was killed (SIGKILL skips its clean-up)."""
    for path in Path(tempfile.gettempdir()).glob(f"{_METRICS_PREFIX}*-*"):
        pid = path.name.removeprefix(_METRICS_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        log.info("api.metrics_dir_removed", path=str(path), reason="its api process is gone")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _api_options(settings: Settings) -> dict[str, Any]:
    return {"host": settings.http_host, "port": settings.http_port, "log_config": None, "access_log": False}


@app.command()
def api(config: ConfigOption = None) -> None:
    """Run the HTTP API alone (DICOMweb, health, metrics) in `api_processes` processes sharing the HTTP port."""
    import uvicorn

    settings = _settings(config)
    broker_url = _broker_url(settings)
    if settings.api_processes == 1:
        from gateway.api import create_app
        from gateway.services import build_services

        services = build_services(settings, broker_url=broker_url)
        _apply_declared_aes(settings, services.engine)
        application = create_app(services)
        settle_heap()
        uvicorn.run(application, **_api_options(settings))
        return

    # uvicorn binds the port here and starts the workers with multiprocessing's spawn: each imports
    # `api_worker_app` afresh and reads its settings as this process did, so hand it what we resolved.
    # This process only supervises: it builds no services, so it stays small (~45 MB RSS).
    os.environ["GATEWAY_BROKER_URL"] = broker_url
    if config is not None:
        os.environ["GATEWAY_CONFIG"] = str(config.resolve())
    # Each worker keeps its metric values in files here, so /metrics can answer for all of them.
    _remove_orphan_metrics_dirs()
    with tempfile.TemporaryDirectory(prefix=f"{_METRICS_PREFIX}{os.getpid()}-") as metrics_dir:
        os.environ[_METRICS_DIR] = metrics_dir
        # uvicorn's own supervisor: restarts a worker that dies, and on SIGTERM/SIGINT stops them all and waits.
        uvicorn.run(
            f"{__name__}:api_worker_app", factory=True, workers=settings.api_processes, **_api_options(settings)
        )


def api_worker_app() -> FastAPI:
    """Build the application in one of `api`'s worker processes (a uvicorn factory; not a command).

    The worker asks the kernel for SIGTERM when `api` dies, so even a SIGKILLed `api` leaves no orphan.
    """
    import multiprocessing

    from gateway.api import create_app
    from gateway.services import build_services
    from gateway.supervisor import die_with_parent

    die_with_parent()
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid != os.getppid():  # `api` died before the request above took effect
        raise SystemExit("dicom-gateway api exited")
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    services = build_services(settings, broker_url=settings.broker_url)
    _apply_declared_aes(settings, services.engine)  # safe from several processes at once
    application = create_app(services, shared_metrics=_METRICS_DIR in os.environ)
    settle_heap()
    return application


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
    _apply_declared_aes(settings, engine)
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


@app.command()
def reindex(
    config: ConfigOption = None,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Objects per indexing task.")] = 200,
) -> None:
    """Queue every object in the object store for indexing again (a restored or lost index, a power loss).

    Indexing is idempotent: objects already indexed are rewritten with the same rows. An object that a
    power loss tore while the SCP wrote it (its C-STORE was never answered) is refused: its seal does not hold.
    """
    from gateway.errors import InvalidUID
    from gateway.services import build_services
    from gateway.storage.keys import parse_key

    settings = _settings(config)
    services = build_services(settings, broker_url=_broker_url(settings))
    queued = skipped = 0
    pending: list[str] = []
    columns = (TextColumn("queueing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        keys = list(services.store.iter_keys(settings.storage_prefix))
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("reindex", total=len(keys))
            for n, key in enumerate(keys, 1):
                try:
                    parse_key(key, settings.storage_prefix)
                    pending.append(key)
                except InvalidUID:
                    skipped += 1  # not an instance key of ours (a foreign object under the prefix)
                if pending and (len(pending) >= batch or n == len(keys)):
                    services.queue.enqueue_reindex_batch(pending)
                    queued += len(pending)
                    pending = []
                progress.update(task, completed=n)
    except GatewayError as exc:
        console.print(f"[red]{exc}[/red] (queued {queued} before that)", highlight=False)
        raise typer.Exit(1) from None
    finally:
        services.close()
    typer.echo(f"queued {queued} objects for indexing, skipped {skipped} keys that name no instance")


def _registry(settings: Settings) -> AERegistry:
    from gateway.admin.ae_titles import AERegistry
    from gateway.index.db import make_engine, make_session_factory
    from gateway.index.db import migrate as run_migrations

    engine = make_engine(settings.resolved_index_url)
    run_migrations(engine)  # idempotent; the registry may be the first thing set up
    return AERegistry(make_session_factory(engine))


def _operations(value: str | None) -> frozenset[Operation] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_OPERATIONS]
    if unknown:
        console.print(f"unknown operation(s) {', '.join(unknown)}; use {','.join(ALL_OPERATIONS)}", highlight=False)
        raise typer.Exit(2)
    return frozenset(cast(Operation, name) for name in names)


def _run_registry(action: Callable[[], None]) -> None:
    """Run a registry action; GatewayErrors become one line on stderr and exit status 1 (2 for bad input)."""
    from gateway.admin.ae_titles import InvalidAE

    try:
        action()
    except InvalidAE as exc:
        console.print(f"[red]invalid {exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    except GatewayError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None


OperationsOption = Annotated[
    str | None,
    typer.Option("--operations", help=f"comma-separated, of {','.join(ALL_OPERATIONS)} (add: all of them)"),
]


@ae_app.command("list")
def ae_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False, config: ConfigOption = None
) -> None:
    """List the registered AEs."""
    registry = _registry(_settings(config))
    entries: list[Any] = []
    _run_registry(lambda: entries.extend(registry.list()))
    if as_json:
        typer.echo(json.dumps([entry.as_dict() for entry in entries], indent=2))
        return
    for entry in entries:
        row = entry.as_dict()
        flags = ("tls " if entry.tls else "") + ("enabled" if entry.enabled else "disabled")
        typer.echo(
            f"{entry.ae_title:<16}  {entry.host}:{entry.port}  {','.join(row['operations']) or '-'}  {flags}  "
            f"[{entry.source}]  {entry.description}".rstrip()
        )


@ae_app.command("add")
def ae_add(
    ae_title: Annotated[str, typer.Argument(help="the remote AE title (1-16 characters)")],
    host: Annotated[str, typer.Argument(help="host name or IP address")],
    port: Annotated[int, typer.Argument(help="TCP port (1-65535)")],
    description: Annotated[str, typer.Option(help="free text")] = "",
    operations: OperationsOption = None,
    tls: Annotated[bool, typer.Option("--tls/--no-tls", help="connect to it with DICOM TLS")] = False,
    enabled: Annotated[bool, typer.Option("--enabled/--disabled")] = True,
    config: ConfigOption = None,
) -> None:
    """Register a remote AE."""
    from gateway.admin.ae_titles import RemoteAETitle

    registry = _registry(_settings(config))
    chosen = _operations(operations)
    entry = RemoteAETitle(
        ae_title, host, port, description, frozenset(ALL_OPERATIONS) if chosen is None else chosen, tls, enabled
    )
    _run_registry(lambda: typer.echo(f"added {registry.add(entry).ae_title}"))


@ae_app.command("update")
def ae_update(
    ae_title: Annotated[str, typer.Argument(help="the registered AE title")],
    host: Annotated[str | None, typer.Option(help="new host")] = None,
    port: Annotated[int | None, typer.Option(help="new port")] = None,
    description: Annotated[str | None, typer.Option(help="new description")] = None,
    operations: OperationsOption = None,
    tls: Annotated[bool | None, typer.Option("--tls/--no-tls")] = None,
    enabled: Annotated[bool | None, typer.Option("--enabled/--disabled")] = None,
    config: ConfigOption = None,
) -> None:
    """Change a registered AE; only the options given change."""
    registry = _registry(_settings(config))
    given = {"host": host, "port": port, "description": description, "tls": tls, "enabled": enabled}
    changes: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
    if (parsed := _operations(operations)) is not None:
        changes["operations"] = parsed
    _run_registry(lambda: typer.echo(f"updated {registry.update(ae_title, **changes).ae_title}"))


@ae_app.command("remove")
def ae_remove(
    ae_title: Annotated[str, typer.Argument(help="the registered AE title")], config: ConfigOption = None
) -> None:
    """Remove a registered AE."""
    registry = _registry(_settings(config))

    def remove() -> None:
        registry.remove(ae_title)
        typer.echo(f"removed {ae_title.strip()}")

    _run_registry(remove)


@ae_app.command("echo")
def ae_echo(
    ae_title: Annotated[str, typer.Argument(help="the registered AE title")],
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 10.0,
    config: ConfigOption = None,
) -> None:
    """C-ECHO a registered AE (over TLS when it is marked so); print the status and round-trip time."""
    from gateway.dimse.scu import echo
    from gateway.dimse.tls import client_context

    settings = _settings(config)
    registry = _registry(settings)
    entries: list[Any] = []
    _run_registry(lambda: entries.append(registry.get(ae_title)))
    entry = entries[0]
    try:
        result = echo(settings.ae_title, entry, timeout, lambda: client_context(settings))
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    where = f"{entry.ae_title} at {entry.host}:{entry.port}{' (TLS)' if entry.tls else ''}"
    if result.ok:
        typer.echo(f"C-ECHO {where}: Success (0x0000) in {result.seconds * 1000:.1f} ms")
        return
    status = f"status 0x{result.status:04X}" if result.status is not None else result.detail
    typer.echo(f"C-ECHO {where}: failed, {status} after {result.seconds * 1000:.1f} ms")
    raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app()
