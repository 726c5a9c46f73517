"""SCP processes sharing the socket `serve` opened: associations spread by load; one stopping spares the rest."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from gateway.dimse import server as scp_server
from gateway.dimse.server import inherited_listener, start_scp
from gateway.errors import ConfigError
from gateway.services import Services
from gateway.supervisor import open_listener
from tests.fixtures.gateway import gateway_services, make_settings, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def services(tmp_path: Path, broker_url: str) -> Iterator[Services]:
    settings = make_settings(tmp_path / "data", broker_url=broker_url, scp_processes=2)
    with gateway_services(settings) as built:
        yield built


def _associate(port: int) -> Association:
    ae = AE(ae_title="SHARESCU")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOMGW")
    assert assoc.is_established
    return assoc


def _serving(server: Any) -> int:
    return int(server.fast_store.active_count())


def test_associations_spread_over_servers_by_load_and_survive_one_stopping(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wide margin so that the busier server's wait decides who accepts, not thread scheduling.
    monkeypatch.setattr(scp_server, "_YIELD_PER_ASSOCIATION", 0.2)
    listener = open_listener("127.0.0.1", 0)
    port = listener.getsockname()[1]
    # Each SCP process holds its own descriptor of the one socket, as after serve's fork.
    first = start_scp(services, listener=listener.dup())
    second = start_scp(services, listener=listener.dup())
    running = [first, second]
    held: list[Association] = []
    try:
        for expected in ([1, 0], [1, 1], [2, 1], [2, 2]):
            held.append(_associate(port))
            wait_for(
                lambda want=expected: sorted([_serving(first), _serving(second)], reverse=True) == want,
                timeout=10,
                what=f"associations spread as {expected}",
            )
        for assoc in held:
            assert assoc.send_c_echo().Status == 0x0000
            assoc.release()
        held.clear()
        wait_for(lambda: _serving(first) + _serving(second) == 0, timeout=10, what="every association to end")

        # One server stopping must not shut the shared socket down for the other.
        running.remove(first)
        first.shutdown()
        for _ in range(3):
            assoc = _associate(port)
            assert assoc.send_c_echo().Status == 0x0000
            assoc.release()
    finally:
        for assoc in held:
            assoc.abort()
        for server in running:
            server.shutdown()
        listener.close()


def test_a_busy_port_is_a_config_error_naming_it() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            open_listener("127.0.0.1", port)


def test_an_inherited_descriptor_must_be_a_listening_socket(tmp_path: Path) -> None:
    unconnected = socket.socket()
    try:
        with pytest.raises(ConfigError, match="not a listening socket"):
            inherited_listener(unconnected.fileno())
    finally:
        unconnected.close()
    with open(tmp_path / "file", "wb") as not_a_socket, pytest.raises(ConfigError, match="not a socket"):
        inherited_listener(not_a_socket.fileno())
