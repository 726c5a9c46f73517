"""Start and stop the DIMSE SCP with its handlers bound to the gateway's services."""

from __future__ import annotations

import socket
import threading
import time
from functools import partial
from typing import Any

from pynetdicom import evt
from pynetdicom.transport import ThreadedAssociationServer

from gateway.admin.ae_titles import AERegistry
from gateway.admin.associations import AssociationLog
from gateway.dimse.ae import AssociationPolicy, make_ae
from gateway.dimse.fast_store import FastStoreAcceptor
from gateway.dimse.handlers import AssociationTracker, handle_connection_open, handle_echo, handle_store
from gateway.dimse.qr import QueryRetrieve, handle_find, handle_get, handle_move, handle_sop_extended
from gateway.dimse.tls import client_context, server_context
from gateway.errors import ConfigError
from gateway.services import Services


class GatewayAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, with storage-only associations handed to the fast receiver."""

    fast_store: FastStoreAcceptor | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        fast_store = self.fast_store
        if fast_store is not None and type(request) is socket.socket:  # not TLS (an SSLSocket)
            negotiation = fast_store.claim(request)
            if negotiation is not None:
                fast_store.serve(request, client_address, negotiation)
                return
        super().finish_request(request, client_address)

    def server_close(self) -> None:
        # Connection threads are joined on close; end the fast associations so that they finish.
        if self.fast_store is not None:
            self.fast_store.abort_all()
        super().server_close()


class SharedListenerAssociationServer(GatewayAssociationServer):
    """Accepts associations from a listening socket that `serve` opened and every SCP process shares.

    Each process polls the one socket; the first to call accept() gets the association, the others get
    EAGAIN (the socket is non-blocking) and poll again. A process already serving associations waits
    `_YIELD_PER_ASSOCIATION` per association before it accepts, so an idler sibling takes the new one:
    parallel associations spread over the processes (and their GILs) by load. SO_REUSEPORT, used before,
    spread them by a hash of the peer's address and port, and put three of a 4-association push's four
    associations on one process in half of the pushes measured.
    """

    listener: socket.socket  # set on the subclass start_scp makes
    yield_to_siblings = False

    def server_bind(self) -> None:
        if self.socket is not None:
            self.socket.close()
        self.listener.setblocking(False)
        self.socket = self.listener
        self.server_address = self.listener.getsockname()
        self._accepted = 0
        self._accepted_lock = threading.Lock()

    def server_activate(self) -> None:
        """The inherited socket is already listening."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        if self.yield_to_siblings:
            load = self._accepted + len(self.ae.active_associations)
            if load:
                time.sleep(min(load, _YIELD_MAX_ASSOCIATIONS) * _YIELD_PER_ASSOCIATION)
        request, address = super().get_request()  # BlockingIOError when a sibling took it: the loop polls on
        with self._accepted_lock:
            self._accepted += 1
        return request, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            super().finish_request(request, client_address)
        finally:
            with self._accepted_lock:
                self._accepted -= 1

    def server_close(self) -> None:
        # Never shutdown() the shared socket: that would stop the sibling processes accepting too.
        if self.fast_store is not None:
            self.fast_store.abort_all()
        if self.socket is not None:
            self.socket.close()


# Seconds an SCP process serving one association waits before it accepts another. Longer than the
# interpreter's switch interval (5 ms): a sibling's accept thread may wait that long for its GIL while
# that sibling's own association thread runs, and it must still come first when it is less busy.
_YIELD_PER_ASSOCIATION = 0.01
_YIELD_MAX_ASSOCIATIONS = 5


def inherited_listener(fd: int) -> socket.socket:
    """The listening socket `serve` passed down as file descriptor `fd`; raises ConfigError if it is not one."""
    try:
        listener = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(f"file descriptor {fd} is not a socket: {exc.strerror or exc}") from exc
    if listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0:
        listener.detach()
        raise ConfigError(f"file descriptor {fd} is not a listening socket")
    return listener


def start_scp(
    services: Services,
    host: str | None = None,
    port: int | None = None,
    tls: bool = False,
    listener: socket.socket | None = None,
) -> ThreadedAssociationServer:
    """Start the SCP in background threads and return its server (call `.shutdown()` to stop).

    With `tls`, it is the DICOM TLS SCP (PS3.15 B.1) on `settings.tls_port` unless `port` is given.
    With `listener` (a listening socket from `serve`), it accepts from that socket, shared with the
    other SCP processes, instead of binding `host:port`.
    Raises ConfigError when the TLS certificate, key or CA cannot be loaded.
    """
    settings = services.settings
    ae = make_ae(settings)
    registry = AERegistry(services.repository.sessions)
    tracker = AssociationTracker(AssociationPolicy(settings, registry), AssociationLog(services.engine), tls=tls)
    qr = QueryRetrieve(
        sessions=services.repository.sessions,
        store=services.store,
        registry=registry,
        ae_title=settings.ae_title,
        client_tls=partial(client_context, settings),  # built when a TLS destination is first used
    )
    handlers: list[Any] = [
        (evt.EVT_CONN_OPEN, handle_connection_open),
        (evt.EVT_REQUESTED, tracker.on_requested),
        (evt.EVT_RELEASED, tracker.on_released),
        (evt.EVT_ABORTED, tracker.on_aborted),
        (evt.EVT_CONN_CLOSE, tracker.on_closed),
        (evt.EVT_SOP_EXTENDED, handle_sop_extended),
        (evt.EVT_C_ECHO, handle_echo, [tracker]),
        (evt.EVT_C_STORE, handle_store, [services.ingest, tracker]),
        (evt.EVT_C_FIND, handle_find, [qr, tracker]),
        (evt.EVT_C_MOVE, handle_move, [qr, tracker]),
        (evt.EVT_C_GET, handle_get, [qr, tracker]),
    ]
    default_port = settings.tls_port if tls else settings.dicom_port
    address = (host if host is not None else settings.dicom_host, port if port is not None else default_port)
    server_class: type[GatewayAssociationServer] = GatewayAssociationServer
    if listener is not None:
        shared = {"listener": listener, "yield_to_siblings": settings.scp_processes > 1}
        server_class = type("SharedListenerServer", (SharedListenerAssociationServer,), shared)
    server: GatewayAssociationServer = ae.make_server(  # type: ignore[assignment]
        address,
        evt_handlers=handlers,
        server_class=server_class,
        ssl_context=server_context(settings) if tls else None,
    )
    # make_server() does not register the server with its AE, but server.shutdown() unregisters it;
    # registering here keeps shutdown clean (and lets ae.shutdown() stop it too).
    ae._servers.append(server)
    if settings.scp_fast_store and not tls:
        server.fast_store = FastStoreAcceptor(
            ae,
            tracker,
            services.ingest,
            max_pdu=settings.max_pdu,
            network_timeout=settings.network_timeout,
            max_associations=settings.max_associations,
        )
    thread = threading.Thread(target=server.serve_forever, name=f"scp-{address[1]}", daemon=True)
    thread.start()
    return server
