"""Association policy against real peers: open and registered, host checks, permissions, live registry changes."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from gateway.admin.ae_titles import AERegistry, RemoteAETitle
from gateway.api import create_app
from gateway.config import ALL_OPERATIONS, Operation
from gateway.dimse import status
from gateway.services import Services
from tests.factories import make_dataset
from tests.fixtures.gateway import gateway_services, make_settings, running_scp, wait_for

pytestmark = pytest.mark.integration
needs_dcmtk = pytest.mark.skipif(shutil.which("echoscu") is None, reason="DCMTK is not installed")
DCMTK_ENV = {"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"}


class Gateway:
    def __init__(self, services: Services, port: int) -> None:
        self.services = services
        self.port = port
        self.registry = AERegistry(services.repository.sessions)

    def register(
        self, title: str, host: str = "127.0.0.1", operations: Sequence[Operation] = ALL_OPERATIONS, **fields: Any
    ) -> None:
        self.registry.add(RemoteAETitle(title, host, 104, operations=frozenset(operations), **fields))

    def associate(self, calling: str, *contexts: str) -> Association:
        ae = AE(ae_title=calling)
        for context in contexts or (Verification,):
            ae.add_requested_context(context)
        return ae.associate("127.0.0.1", self.port, ae_title="DICOMGW")


MakeGateway = Callable[..., Gateway]


@pytest.fixture
def make_gateway(tmp_path: Path, broker_url: str) -> Iterator[MakeGateway]:
    """Start an SCP with the given settings (any number per test); all are stopped at the end."""
    with contextlib.ExitStack() as stack:
        count = itertools.count()

        def start(**overrides: Any) -> Gateway:
            settings = make_settings(tmp_path / f"data{next(count)}", broker_url=broker_url, **overrides)
            services = stack.enter_context(gateway_services(settings))
            return Gateway(services, stack.enter_context(running_scp(services)))

        yield start


def rejection(assoc: Association) -> tuple[int, int, int]:
    assert assoc.is_rejected and not assoc.is_established
    primitive = assoc.acceptor.primitive
    assert primitive is not None
    return primitive.result, primitive.result_source, primitive.diagnostic


@needs_dcmtk
@pytest.mark.parametrize("policy", ["open", "registered"])
def test_echoscu_in_each_policy(make_gateway: MakeGateway, policy: str) -> None:
    gateway = make_gateway(association_policy=policy)
    if policy == "registered":
        gateway.register("ECHOSCU", operations=[])
    result = subprocess.run(
        ["echoscu", "-aec", "DICOMGW", "127.0.0.1", str(gateway.port)], env=DCMTK_ENV, capture_output=True
    )
    assert result.returncode == 0, result.stderr
    unknown = subprocess.run(
        ["echoscu", "-aet", "NOBODY", "-aec", "DICOMGW", "127.0.0.1", str(gateway.port)],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
    )
    if policy == "registered":
        assert unknown.returncode != 0
        assert "Calling AE Title Not Recognized" in unknown.stderr, unknown.stderr
    else:
        assert unknown.returncode == 0, unknown.stderr


def test_unknown_caller_is_rejected_logged_and_counted(make_gateway: MakeGateway) -> None:
    gateway = make_gateway(association_policy="registered")
    with structlog.testing.capture_logs() as logs:
        assert rejection(gateway.associate("NOBODY")) == (0x01, 0x01, 0x03)  # PS3.8 9.3.4: calling AE not recognized
    rejected = [entry for entry in logs if entry["event"] == "dimse.association.rejected"]
    assert len(rejected) == 1
    assert rejected[0]["reason"] == "calling AE title not recognized"
    assert rejected[0]["calling_ae"] == "NOBODY" and rejected[0]["peer"].startswith("127.0.0.1:")
    api = TestClient(create_app(gateway.services))
    # The log row is written as the SCP closes the connection, which may follow the client's return.
    wait_for(lambda: api.get("/api/status").json()["associations"]["rejected"] == 1, 10, "the rejection logged")
    body = api.get("/api/status").json()
    assert body["association_policy"] == "registered"
    assert body["associations"]["rejected_by_reason"] == {"calling AE title not recognized": 1}
    recent = body["associations"]["recent"][0]
    assert (recent["calling_ae"], recent["result"], recent["reason"]) == (
        "NOBODY",
        "rejected",
        "calling AE title not recognized",
    )
    assert recent["peer"].startswith("127.0.0.1:")


def test_disabled_entries_and_host_check(make_gateway: MakeGateway) -> None:
    gateway = make_gateway(association_policy="registered", association_check_host=True)
    gateway.register("LOCALHOST", host="localhost")
    gateway.register("ELSEWHERE", host="192.0.2.10")  # TEST-NET-1: never this machine
    gateway.register("OFF", enabled=False)
    assoc = gateway.associate("LOCALHOST")
    assert assoc.is_established
    assoc.release()
    assert rejection(gateway.associate("ELSEWHERE")) == (0x01, 0x01, 0x03)
    assert rejection(gateway.associate("OFF")) == (0x01, 0x01, 0x03)


def test_disabled_entry_is_refused_in_open_policy_too(make_gateway: MakeGateway) -> None:
    gateway = make_gateway()
    gateway.register("OFF", enabled=False)
    assert rejection(gateway.associate("OFF")) == (0x01, 0x01, 0x03)
    assoc = gateway.associate("ANYONE")
    assert assoc.is_established
    assoc.release()


def test_registry_changes_apply_to_the_next_association_without_restart(make_gateway: MakeGateway) -> None:
    gateway = make_gateway(association_policy="registered")
    api = TestClient(create_app(gateway.services))
    assert rejection(gateway.associate("LATECOMER"))[2] == 0x03
    assert api.post("/api/aes", json={"ae_title": "LATECOMER", "host": "127.0.0.1", "port": 104}).status_code == 201
    assoc = gateway.associate("LATECOMER")
    assert assoc.is_established
    assoc.release()
    assert api.patch("/api/aes/LATECOMER", json={"enabled": False}).status_code == 200
    assert rejection(gateway.associate("LATECOMER"))[2] == 0x03
    assert api.delete("/api/aes/LATECOMER").status_code == 204
    assert rejection(gateway.associate("LATECOMER"))[2] == 0x03


@pytest.mark.parametrize("policy", ["open", "registered"])
def test_store_needs_the_store_permission(make_gateway: MakeGateway, policy: str) -> None:
    gateway = make_gateway(association_policy=policy)
    gateway.register("VIEWER", operations=["find", "move"])
    gateway.register("MODALITY", operations=["store"])
    ds = make_dataset()
    for calling, expected in (("VIEWER", status.NOT_AUTHORIZED), ("MODALITY", status.SUCCESS)):
        assoc = gateway.associate(calling, CTImageStorage)
        assert assoc.is_established
        try:
            assert int(assoc.send_c_store(ds).Status) == expected, calling
        finally:
            assoc.release()
    assert len(list(gateway.services.store.iter_keys())) == 1


def test_status_reports_recent_associations_and_queue_depth(make_gateway: MakeGateway) -> None:
    gateway = make_gateway()
    assoc = gateway.associate("MODALITY", CTImageStorage)
    assert assoc.is_established
    for _ in range(2):
        assert int(assoc.send_c_store(make_dataset()).Status) == status.SUCCESS
    assoc.release()
    api = TestClient(create_app(gateway.services))
    wait_for(lambda: api.get("/api/status").json()["associations"]["accepted"] == 1, 10, "the association logged")
    body = api.get("/api/status").json()
    assert body["queue"] == {"index": 2}  # indexed by no worker here: both tasks wait in the broker
    recent = body["associations"]["recent"][0]
    assert recent["calling_ae"] == "MODALITY" and recent["called_ae"] == "DICOMGW"
    assert recent["services"] == ["C-STORE"] and recent["instances"] == 2 and recent["bytes"] > 0
    assert recent["result"] == "released" and recent["duration_seconds"] >= 0
    assert api.get("/api/status", params={"limit": 0}).status_code == 400
