"""Start and stop the DIMSE SCP with its handlers bound to the gateway's services."""

from __future__ import annotations

import socket
import threading
from typing import Any

from pynetdicom import evt
from pynetdicom.transport import ThreadedAssociationServer

from gateway.dimse.ae import make_ae
from gateway.dimse.handlers import handle_connection_open, handle_echo, handle_requested, handle_store
from gateway.services import Services


class ReusePortAssociationServer(ThreadedAssociationServer):
    """An association server that lets several SCP processes share one port (SO_REUSEPORT).

    One pynetdicom process is bound to one GIL; the kernel spreads new associations over the processes.
    """

    def server_bind(self) -> None:
        if self.socket is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def start_scp(
    services: Services, host: str | None = None, port: int | None = None, reuse_port: bool = False
) -> ThreadedAssociationServer:
    """Start the SCP in background threads and return its server (call `.shutdown()` to stop)."""
    settings = services.settings
    ae = make_ae(settings)
    handlers: list[Any] = [
        (evt.EVT_CONN_OPEN, handle_connection_open),
        (evt.EVT_REQUESTED, handle_requested, [settings.all_ae_titles]),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [services.ingest]),
    ]
    address = (host if host is not None else settings.dicom_host, port if port is not None else settings.dicom_port)
    server_class = ReusePortAssociationServer if reuse_port else ThreadedAssociationServer
    server: ThreadedAssociationServer = ae.make_server(address, evt_handlers=handlers, server_class=server_class)
    # make_server() does not register the server with its AE, but server.shutdown() unregisters it;
    # registering here keeps shutdown clean (and lets ae.shutdown() stop it too).
    ae._servers.append(server)
    thread = threading.Thread(target=server.serve_forever, name=f"scp-{address[1]}", daemon=True)
    thread.start()
    return server
