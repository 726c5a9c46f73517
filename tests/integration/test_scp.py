"""The SCP against real peers (DCMTK, pynetdicom SCU) with a real Redis broker: statuses and durability."""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
)
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from gateway.dimse import status
from gateway.ingest import part10_from_dataset
from gateway.queue import INDEX_QUEUE
from gateway.services import Services
from testdata.generate import generate_corpus, pydicom_test_files
from tests.factories import make_dataset, new_uid, to_part10_bytes
from tests.fixtures.gateway import gateway_services, make_settings, running_scp
from tests.fixtures.servers import free_port
from tests.part10 import assert_same_content, dataset_bytes

pytestmark = pytest.mark.integration
needs_dcmtk = pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK (storescu/echoscu) is not installed")


@dataclass
class Gateway:
    services: Services
    port: int
    broker_url: str

    def queued(self) -> int:
        return int(redis.Redis.from_url(self.broker_url).llen(INDEX_QUEUE))

    def keys(self) -> list[str]:
        return list(self.services.store.iter_keys())


@pytest.fixture
def gateway(tmp_path: Path, broker_url: str) -> Iterator[Gateway]:
    settings = make_settings(tmp_path / "data", broker_url=broker_url)
    with gateway_services(settings) as services, running_scp(services) as port:
        yield Gateway(services, port, broker_url)


@pytest.fixture(params=["fast", "pynetdicom"])
def either_receiver(request: pytest.FixtureRequest, tmp_path: Path, broker_url: str) -> Iterator[Gateway]:
    """The gateway with storage associations served by the fast receiver, or by pynetdicom for all."""
    settings = make_settings(tmp_path / "data", broker_url=broker_url, scp_fast_store=request.param == "fast")
    with gateway_services(settings) as services, running_scp(services) as port:
        yield Gateway(services, port, broker_url)


@pytest.fixture(autouse=True)
def _send_files_byte_for_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    # pynetdicom then sends a file's dataset bytes unchanged, with the command UIDs from its file meta,
    # which is how these tests put crafted (mismatched, truncated, garbage) datasets on the wire.
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)


def send(port: int, *items: Dataset | Path) -> list[int]:
    """Send each dataset (or Part 10 file, bytes as they are) with pynetdicom; return the statuses."""
    ae = AE(ae_title="TESTSCU")
    for item in items:
        if isinstance(item, Path):
            meta = dcmread(item, stop_before_pixels=True).file_meta
            ae.add_requested_context(meta.MediaStorageSOPClassUID, [meta.TransferSyntaxUID])
        else:
            ae.add_requested_context(item.SOPClassUID, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOMGW")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(item).Status) for item in items]
    finally:
        assoc.release()


def crafted_file(path: Path, ds: Dataset, meta_sop_instance: str | None = None, body: bytes | None = None) -> Path:
    """A Part 10 file whose meta may name another SOP Instance UID, or whose dataset bytes are replaced."""
    data = dataset_bytes(to_part10_bytes(ds)) if body is None else body
    path.write_bytes(
        part10_from_dataset(
            data, ExplicitVRLittleEndian, ds.SOPClassUID, meta_sop_instance or ds.SOPInstanceUID, "CRAFTED"
        )
    )
    return path


@needs_dcmtk
def test_echoscu_gets_success(gateway: Gateway) -> None:
    result = subprocess.run(["echoscu", "-aec", "DICOMGW", "127.0.0.1", str(gateway.port)], capture_output=True)
    assert result.returncode == 0, result.stderr


@needs_dcmtk
def test_storescu_files_are_stored_as_sent_with_file_meta(either_receiver: Gateway) -> None:
    gateway = either_receiver
    files = [Path(get_testdata_file(name)) for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")]  # type: ignore[arg-type]
    result = subprocess.run(
        ["storescu", "-v", "-nh", "-aec", "DICOMGW", "127.0.0.1", str(gateway.port), *map(str, files)],
        capture_output=True,
        text=True,
        env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Received Store Response (Success)") == 3, result.stderr
    assert gateway.queued() == 3
    for path in files:
        ds = dcmread(path, stop_before_pixels=True)
        key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        stored = gateway.services.store.read(key)
        assert_same_content(stored, path)
        meta = dcmread(io.BytesIO(stored)).file_meta
        assert meta.SourceApplicationEntityTitle == "STORESCU"
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_every_corpus_file_is_stored_byte_for_byte(either_receiver: Gateway, tmp_path: Path) -> None:
    """pynetdicom sends each file's dataset bytes unchanged, in the file's own transfer syntax."""
    gateway = either_receiver
    files = generate_corpus(tmp_path / "corpus") + pydicom_test_files()
    consistent = []
    for path in files:
        ds = dcmread(path, stop_before_pixels=True)
        # rtplan.dcm's file meta names another SOP Instance UID than its dataset: the command then
        # disagrees with the dataset, which must be refused (DCMTK sends the dataset's UID instead).
        if ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID:
            assert send(gateway.port, path) == [status.SUCCESS], path
            consistent.append(path)
        else:
            assert send(gateway.port, path) == [status.STORAGE_DATASET_DOES_NOT_MATCH], path
    assert len(consistent) == len(files) - 1
    for path in consistent:
        ds = dcmread(path, stop_before_pixels=True)
        stored = gateway.services.store.read(f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm")
        assert dataset_bytes(stored) == dataset_bytes(path.read_bytes()), path
        meta = dcmread(io.BytesIO(stored), stop_before_pixels=True).file_meta
        assert meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID, path
        assert meta.SourceApplicationEntityTitle == "TESTSCU"
    assert gateway.queued() == len(consistent)


def test_requestor_transfer_syntax_order_is_kept(gateway: Gateway) -> None:
    """Offered big endian first in one context, the gateway takes big endian, so nothing is converted."""
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage, [ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_requested_context(MRImageStorage, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", gateway.port, ae_title="DICOMGW")
    assert assoc.is_established
    try:
        chosen = {cx.abstract_syntax: cx.transfer_syntax[0] for cx in assoc.accepted_contexts}
    finally:
        assoc.release()
    assert chosen == {CTImageStorage: ExplicitVRBigEndian, MRImageStorage: ImplicitVRLittleEndian}


def test_wrong_called_ae_title_is_rejected_and_aliases_are_accepted(tmp_path: Path, broker_url: str) -> None:
    settings = make_settings(tmp_path / "data", broker_url=broker_url, ae_aliases=["GATEWAY2"])
    with gateway_services(settings) as services, running_scp(services) as port:
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(Verification)
        wrong = ae.associate("127.0.0.1", port, ae_title="NOTUS")
        assert wrong.is_rejected and not wrong.is_established
        assert wrong.acceptor.primitive is not None
        rejection = wrong.acceptor.primitive
        assert (rejection.result, rejection.result_source, rejection.diagnostic) == (0x01, 0x01, 0x07)
        for title in ("DICOMGW", "GATEWAY2"):
            assoc = ae.associate("127.0.0.1", port, ae_title=title)
            assert assoc.is_established, title
            assert int(assoc.send_c_echo().Status) == status.SUCCESS
            assoc.release()


def test_unknown_sop_class_context_is_rejected(gateway: Gateway) -> None:
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context("1.2.826.0.1.3680043.10.1531.99.1", [ExplicitVRLittleEndian])
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", gateway.port, ae_title="DICOMGW")
    assert assoc.is_established
    try:
        rejected = [cx.abstract_syntax for cx in assoc.rejected_contexts]
        accepted = [cx.abstract_syntax for cx in assoc.accepted_contexts]
    finally:
        assoc.release()
    assert rejected == ["1.2.826.0.1.3680043.10.1531.99.1"]
    assert accepted == [Verification]


def test_dataset_whose_uid_differs_from_the_command_gets_a900(either_receiver: Gateway, tmp_path: Path) -> None:
    gateway = either_receiver
    ds = make_dataset()
    path = crafted_file(tmp_path / "mismatch.dcm", ds, meta_sop_instance=new_uid())
    assert send(gateway.port, path) == [status.STORAGE_DATASET_DOES_NOT_MATCH]
    assert gateway.keys() == []
    assert gateway.queued() == 0


@pytest.mark.parametrize(
    "bad_uid", ["../../etc", "1." + "2" * 63, "1.2.abc.4", "1.2..3"], ids=["traversal", "65-chars", "letters", "empty"]
)
def test_malformed_study_uid_gets_cannot_understand(gateway: Gateway, tmp_path: Path, bad_uid: str) -> None:
    ds = make_dataset(study_uid=bad_uid)
    path = crafted_file(tmp_path / "bad.dcm", ds)
    assert send(gateway.port, path) == [status.STORAGE_CANNOT_UNDERSTAND_UID]
    assert gateway.keys() == []
    assert not any(".." in p.name for p in (tmp_path / "data").rglob("*"))


def test_missing_series_uid_gets_cannot_understand(gateway: Gateway, tmp_path: Path) -> None:
    ds = make_dataset()
    del ds.SeriesInstanceUID
    assert send(gateway.port, crafted_file(tmp_path / "noseries.dcm", ds)) == [status.STORAGE_CANNOT_UNDERSTAND_UID]
    assert gateway.keys() == []


def test_garbage_and_truncated_datasets_get_cannot_understand(either_receiver: Gateway, tmp_path: Path) -> None:
    gateway = either_receiver
    ds = make_dataset(rows=64, columns=64)
    whole = dataset_bytes(to_part10_bytes(ds))
    garbage = crafted_file(tmp_path / "garbage.dcm", ds, body=b"\xde\xad\xbe\xef" * 50)
    truncated = crafted_file(tmp_path / "truncated.dcm", ds, body=whole[: len(whole) - 1000])
    statuses = send(gateway.port, garbage, truncated)
    assert all(0xC000 <= s <= 0xCFFF for s in statuses), [hex(s) for s in statuses]
    assert gateway.keys() == []
    assert gateway.queued() == 0


def test_same_instance_twice_and_concurrently_is_stored_once(gateway: Gateway) -> None:
    ds = make_dataset()
    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda: results.append(send(gateway.port, ds, ds))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [[0, 0]] * 4
    key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
    assert gateway.keys() == [key]
    assert dataset_bytes(gateway.services.store.read(key)) == dataset_bytes(to_part10_bytes(ds))


def test_broker_down_gets_out_of_resources_and_leaves_no_object(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", broker_url=f"redis://127.0.0.1:{free_port()}/0", broker_timeout=0.5)
    with gateway_services(settings) as services, running_scp(services) as port:
        assert send(port, make_dataset()) == [status.STORAGE_OUT_OF_RESOURCES_QUEUE]
        assert list(services.store.iter_keys()) == []


def test_object_store_down_gets_out_of_resources(tmp_path: Path, broker_url: str) -> None:
    storage_url = f"s3://gateway-objects?endpoint=127.0.0.1:{free_port()}&secure=false"
    settings = make_settings(
        tmp_path / "data", broker_url=broker_url, storage_url=storage_url, s3_access_key="k", s3_secret_key="s"
    )
    with gateway_services(settings) as services, running_scp(services) as port:
        assert send(port, make_dataset()) == [status.STORAGE_OUT_OF_RESOURCES]
    assert redis.Redis.from_url(broker_url).llen(INDEX_QUEUE) == 0
