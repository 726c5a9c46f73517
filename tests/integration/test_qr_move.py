"""C-MOVE SCP: to DCMTK storescp registered as destination, transfer syntaxes, refusals and C-CANCEL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from gateway.dimse import status
from tests.factories import make_dataset, new_uid, to_part10_bytes
from tests.fixtures.qr import QRGateway, dcmtk, needs_dcmtk, qr_gateway, storescp
from tests.fixtures.servers import free_port
from tests.part10 import dataset_bytes

pytestmark = pytest.mark.integration
MOVE = str(StudyRootQueryRetrieveInformationModelMove)


@pytest.fixture(params=["open", "registered"])
def gateway(request: pytest.FixtureRequest, tmp_path: Path, broker_url: str) -> Iterator[QRGateway]:
    with qr_gateway(tmp_path, broker_url, association_policy=request.param) as gateway:
        if request.param == "registered":
            gateway.register("MOVESCU", operations=["move"])
        yield gateway


def movescu(gateway: QRGateway, destination: str, level: str, **keys: str) -> str:
    args = ["movescu", "-v", "-S", "-aet", "MOVESCU", "-aec", "DICOMGW", "-aem", destination]
    args += ["127.0.0.1", str(gateway.port), "-k", f"QueryRetrieveLevel={level}"]
    for keyword, value in keys.items():
        args += ["-k", f"{keyword}={value}"]
    result = dcmtk(*args)
    return result.stderr + result.stdout


def study_uids(gateway: QRGateway) -> list[str]:
    return sorted({str(ds.StudyInstanceUID) for ds in gateway.datasets()})


@needs_dcmtk
def test_movescu_to_registered_storescp_gets_every_file_as_stored(gateway: QRGateway, tmp_path: Path) -> None:
    received = tmp_path / "received"
    # +xa: accept every transfer syntax; +B: write the data set bytes exactly as received.
    with storescp(received, "DEST", "+xa", "+B") as port:
        gateway.register("DEST", port, operations=["destination"])
        log = movescu(gateway, "DEST", "STUDY", StudyInstanceUID="\\".join(study_uids(gateway)))
    total = len(gateway.corpus)
    assert "Received Final Move Response (Success)" in log, log
    files = sorted(received.iterdir())
    assert len(files) == total, log
    for ds in gateway.datasets():
        moved = next(p for p in files if p.name.endswith(ds.SOPInstanceUID) or ds.SOPInstanceUID in p.name)
        stored = gateway.stored(ds)
        moved_meta = dcmread(moved, stop_before_pixels=True).file_meta
        assert moved_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID, moved.name
        assert dataset_bytes(moved.read_bytes()) == dataset_bytes(stored), moved.name


@needs_dcmtk
def test_move_transcodes_compressed_instances_for_a_destination_without_them(
    gateway: QRGateway, tmp_path: Path
) -> None:
    received = tmp_path / "received"
    with storescp(received, "NATIVE") as port:  # storescp's default: uncompressed transfer syntaxes only
        gateway.register("NATIVE", port, operations=["destination"])
        log = movescu(gateway, "NATIVE", "STUDY", StudyInstanceUID="\\".join(study_uids(gateway)))
    assert "Received Final Move Response (Success)" in log, log
    by_uid = {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in received.iterdir()}
    assert len(by_uid) == len(gateway.corpus)
    for path in gateway.corpus:
        source = dcmread(path)
        moved = dcmread(by_uid[source.SOPInstanceUID])
        assert not moved.file_meta.TransferSyntaxUID.is_compressed
        if source.file_meta.TransferSyntaxUID.is_compressed:
            assert moved.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian, path
        assert np.array_equal(moved.pixel_array, source.pixel_array), path


@needs_dcmtk
def test_move_to_an_unregistered_destination_is_refused_with_a801(gateway: QRGateway, tmp_path: Path) -> None:
    received = tmp_path / "received"
    with storescp(received, "STRANGER") as _port:
        log = movescu(gateway, "STRANGER", "STUDY", StudyInstanceUID=study_uids(gateway)[0])
    assert "Final Move Response (Refused: MoveDestinationUnknown)" in log, log
    assert list(received.iterdir()) == []


@needs_dcmtk
def test_move_to_a_registered_destination_that_is_down(gateway: QRGateway) -> None:
    gateway.register("DOWN", free_port(), operations=["destination"])
    started = time.monotonic()
    log = movescu(gateway, "DOWN", "STUDY", StudyInstanceUID=study_uids(gateway)[0])
    # pynetdicom answers 0xA801 when it cannot associate with the destination (see README: Query/Retrieve).
    assert "Final Move Response (Refused: MoveDestinationUnknown)" in log, log
    assert time.monotonic() - started < 30


class Destination:
    """A pynetdicom storage SCP that is slow on purpose and remembers what it received and when it closed."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.received: list[str] = []
        self.released = threading.Event()
        ae = AE(ae_title="SLOWDEST")
        ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian])
        ae.add_supported_context(Verification)
        handlers = [(evt.EVT_C_STORE, self._store), (evt.EVT_RELEASED, lambda _e: self.released.set())]
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self.port = int(self.server.server_address[1])

    def _store(self, event: evt.Event) -> int:
        time.sleep(self.delay)
        self.received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000


def c_move(gateway: QRGateway, destination: str, identifier: Dataset, cancel_after: int | None = None) -> list[Dataset]:
    ae = AE(ae_title="MOVESCU")
    ae.add_requested_context(MOVE)
    assoc = ae.associate("127.0.0.1", gateway.port, ae_title="DICOMGW")
    assert assoc.is_established
    context_id = next(cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax == MOVE)
    responses = []
    try:
        for rsp, _identifier in assoc.send_c_move(identifier, destination, MOVE):
            responses.append(rsp)
            if cancel_after is not None and len(responses) == cancel_after:
                assoc.send_c_cancel(1, context_id)
    finally:
        assoc.release()
    return responses


def test_cancel_in_the_middle_of_a_large_move(gateway: QRGateway) -> None:
    study, series = new_uid(), new_uid()
    count = 40
    for n in range(count):
        ds = make_dataset(study_uid=study, series_uid=series, InstanceNumber=n + 1)
        gateway.services.indexing.index_object(gateway.services.ingest.ingest_file(to_part10_bytes(ds)).key)
    destination = Destination(delay=0.05)
    try:
        gateway.register("SLOWDEST", destination.port, operations=["destination"])
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = study
        responses = c_move(gateway, "SLOWDEST", identifier, cancel_after=5)
        final = responses[-1]
        assert final.Status == status.CANCELLED
        remaining = int(final.NumberOfRemainingSuboperations)
        completed = int(final.NumberOfCompletedSuboperations)
        assert remaining > 0 and completed >= 5
        assert completed + remaining + int(final.NumberOfFailedSuboperations) == count
        # Nothing half-done: the destination got exactly the completed ones, and its association was released.
        assert destination.released.wait(10)
        assert len(destination.received) == completed
    finally:
        destination.server.shutdown()


def test_move_refusals(gateway: QRGateway) -> None:
    destination = Destination()
    try:
        gateway.register("SLOWDEST", destination.port, operations=["destination"])
        bad = Dataset()
        bad.QueryRetrieveLevel = "STUDY"  # no StudyInstanceUID
        responses = c_move(gateway, "SLOWDEST", bad)
        assert [int(r.Status) for r in responses] == [status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS]
        assert responses[0].OffendingElement == 0x0020000D
        nothing = Dataset()
        nothing.QueryRetrieveLevel = "STUDY"
        nothing.StudyInstanceUID = new_uid()
        responses = c_move(gateway, "SLOWDEST", nothing)
        assert [int(r.Status) for r in responses] == [status.SUCCESS]
        assert int(responses[0].NumberOfCompletedSuboperations) == 0
        assert destination.received == []
    finally:
        destination.server.shutdown()


def test_a_caller_without_move_permission_gets_no_move_context(gateway: QRGateway) -> None:
    gateway.register("FINDONLY", operations=["find"])
    ae = AE(ae_title="FINDONLY")
    ae.add_requested_context(MOVE)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", gateway.port, ae_title="DICOMGW")
    assert assoc.is_established
    try:
        assert [cx.abstract_syntax for cx in assoc.rejected_contexts] == [MOVE]
    finally:
        assoc.release()
