"""The HTTP application: routers, problem+json errors, and /healthz /readyz /metrics."""

from __future__ import annotations

import time
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import __version__
from gateway.admin.router import make_router as admin_router
from gateway.dicomweb.router import make_router as dicomweb_router
from gateway.errors import (
    Forbidden,
    GatewayError,
    IndexUnavailable,
    InvalidDicom,
    InvalidQuery,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    QueueUnavailable,
    StorageUnavailable,
    UnsupportedMediaType,
)
from gateway.fhir.router import make_admin_router as fhir_admin_router
from gateway.fhir.router import make_router as fhir_router
from gateway.index.queries import instance_counts
from gateway.services import Services

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
_ERROR_STATUS: tuple[tuple[type[GatewayError], int, str], ...] = (
    (InvalidQuery, 400, "Invalid query parameter"),
    (InvalidDicom, 400, "Invalid DICOM"),
    (Forbidden, 403, "Forbidden"),
    (NotFound, 404, "Not found"),
    (NotAcceptable, 406, "Not acceptable"),
    (PayloadTooLarge, 413, "Payload too large"),
    (UnsupportedMediaType, 415, "Unsupported media type"),
    (StorageUnavailable, 503, "Object store unavailable"),
    (QueueUnavailable, 503, "Task broker unavailable"),
    (IndexUnavailable, 503, "Index unavailable"),
)


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """Return an RFC 9457 problem+json response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        for kind, status, title in _ERROR_STATUS:
            if isinstance(exc, kind):
                log.warning("http.error", path=request.url.path, status=status, reason=str(exc))
                extra = {"parameter": exc.parameter} if isinstance(exc, InvalidQuery) else {}
                return problem(status, title, str(exc), **extra)
        log.error("http.error.unmapped", path=request.url.path, reason=str(exc))
        return problem(500, "Internal error", "the request failed; see the gateway log")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("query",), "msg": "invalid"}
        parameter = str(first["loc"][-1])
        log.warning("http.invalid", path=request.url.path, parameter=parameter, reason=first["msg"])
        return problem(400, "Invalid query parameter", f"{parameter}: {first['msg']}", parameter=parameter)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("http.error.unexpected", path=request.url.path)
        return problem(500, "Internal error", "the request failed; see the gateway log")


class _Measure:
    """Request count and latency per method, as plain ASGI middleware.

    `@app.middleware("http")` (Starlette's BaseHTTPMiddleware) runs every response through an extra task and
    memory stream: profiled at about a fifth of a QIDO request's CPU time. This only watches the messages.
    """

    def __init__(self, app: ASGIApp, requests: Counter, latency: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app fails before it starts a response

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            method = scope["method"]
            self.latency.labels(method).observe(time.perf_counter() - started)
            self.requests.labels(method, str(status)).inc()


def create_app(services: Services, *, shared_metrics: bool = False) -> FastAPI:
    """Return the FastAPI application serving DICOMweb, health and metrics for `services`.

    `shared_metrics`: this is one of several API processes sharing the port, and prometheus_client writes
    every process's values to PROMETHEUS_MULTIPROC_DIR; /metrics then sums them all, whichever answers.
    """
    app = FastAPI(title="DICOM gateway", version=__version__, docs_url="/docs")
    registry = CollectorRegistry()
    requests = Counter("gateway_http_requests", "HTTP requests", ["method", "status"], registry=registry)
    latency = Histogram("gateway_http_request_seconds", "HTTP request latency", ["method"], registry=registry)
    # Counted afresh at each scrape, so across processes the most recent count is the true one.
    objects = Gauge(
        "gateway_index_objects", "Objects in the index", ["level"], registry=registry, multiprocess_mode="mostrecent"
    )
    if services.settings.cors_origins:
        # Viewers served from another origin read DICOMweb with fetch(); they need these headers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=services.settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["Warning", "Content-Type", "Content-Location"],
        )

    # JSON (QIDO, metadata, FHIR) compresses ~10x; DICOM objects, frames and images are sent as they are.
    app.add_middleware(
        GZipMiddleware,
        minimum_size=1024,
        exclude_content_types=(
            *DEFAULT_EXCLUDED_CONTENT_TYPES,
            "multipart/*",
            "application/dicom",
            "application/octet-stream",
            "image/*",
        ),
    )

    app.add_middleware(_Measure, requests=requests, latency=latency)

    _install_error_handlers(app)
    app.include_router(dicomweb_router(services))
    app.include_router(fhir_router(services))
    app.include_router(fhir_admin_router(services))
    app.include_router(admin_router(services))

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process serves requests")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["ops"], summary="Readiness: index, object store and broker reachable")
    def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        for name, check in (
            ("index", services.repository.check),
            ("store", services.store.check),
            ("broker", services.queue.check),
        ):
            try:
                check()
                checks[name] = "ok"
            except GatewayError as exc:
                checks[name] = str(exc)
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
        )

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    def metrics() -> Response:
        try:
            for level, count in instance_counts(services.repository.sessions).items():
                objects.labels(level).set(count)
        except Exception:  # metrics must still answer when the index is down
            log.warning("metrics.index_unavailable")
        if shared_metrics:
            every_process = CollectorRegistry()
            MultiProcessCollector(every_process)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
            return Response(generate_latest(every_process), media_type=CONTENT_TYPE_LATEST)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
