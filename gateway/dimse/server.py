"""Start and stop the DIMSE SCP with its handlers bound to the gateway's services."""

from __future__ import annotations

from typing import Any

from pynetdicom import evt
from pynetdicom.transport import ThreadedAssociationServer

from gateway.dimse.ae import make_ae
from gateway.dimse.handlers import handle_connection_open, handle_echo, handle_store
from gateway.services import Services


def start_scp(services: Services, host: str | None = None, port: int | None = None) -> ThreadedAssociationServer:
    """Start the SCP in background threads and return its server (call `.shutdown()` to stop)."""
    settings = services.settings
    ae = make_ae(settings)
    handlers: list[Any] = [
        (evt.EVT_CONN_OPEN, handle_connection_open),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [services.ingest]),
    ]
    address = (host if host is not None else settings.dicom_host, port if port is not None else settings.dicom_port)
    server = ae.start_server(address, block=False, evt_handlers=handlers)
    assert server is not None  # block=False always returns the server
    return server
