"""The ingest service with in-memory fakes: validate, store, enqueue, and compensate on failure."""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian

from gateway.dicom.seal import is_sealed, seal_holds
from gateway.errors import DatasetMismatch, InvalidDicom, InvalidUID, QueueUnavailable, StorageUnavailable
from gateway.ingest import IngestService, part10_from_dataset
from tests.factories import make_dataset, new_uid, to_part10_bytes
from tests.fakes import MemoryStore, RecordingQueue
from tests.part10 import dataset_bytes, meta_end


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def ingest(store: MemoryStore, queue: RecordingQueue) -> IngestService:
    return IngestService(store, queue, prefix="site-a/")


def test_dataset_is_stored_with_file_meta_then_queued(
    ingest: IngestService, store: MemoryStore, queue: RecordingQueue
) -> None:
    ds = make_dataset()
    body = dataset_bytes(to_part10_bytes(ds))
    result = ingest.ingest_dataset(body, ExplicitVRLittleEndian, ds.SOPClassUID, ds.SOPInstanceUID, "MODALITY1")
    key = f"site-a/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
    assert result.key == key and result.written
    assert queue.keys == [key]
    stored = store.objects[key]
    assert dataset_bytes(stored) == body  # the peer's bytes, untouched
    meta = dcmread(io.BytesIO(stored)).file_meta
    assert meta.SourceApplicationEntityTitle == "MODALITY1"
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_a_dimse_dataset_is_sealed_and_created_in_place_and_a_stow_file_is_kept_byte_for_byte(
    ingest: IngestService, store: MemoryStore
) -> None:
    ds, other = make_dataset(), make_dataset()
    body = dataset_bytes(to_part10_bytes(ds))
    dimse = ingest.ingest_dataset(body, ExplicitVRLittleEndian, ds.SOPClassUID, ds.SOPInstanceUID)
    assert (store.creates, store.puts) == (1, 0)
    assert is_sealed(store.objects[dimse.key][:128]) and seal_holds([store.objects[dimse.key]])
    file = to_part10_bytes(other)
    stow = ingest.ingest_file(file)
    assert (store.creates, store.puts) == (1, 1)  # no seal: written atomically, never in place
    assert store.objects[stow.key] == file


def test_a_torn_object_left_by_a_crash_is_replaced_by_the_senders_retry(
    ingest: IngestService, store: MemoryStore, queue: RecordingQueue
) -> None:
    ds = make_dataset()
    body = dataset_bytes(to_part10_bytes(ds))
    whole = part10_from_dataset(body, ExplicitVRLittleEndian, ds.SOPClassUID, ds.SOPInstanceUID, None)
    key = f"site-a/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
    half = len(whole) // 2
    store.objects[key] = whole[:half] + bytes(len(whole) - half)  # its end never reached the disk
    assert not seal_holds([store.objects[key]])
    retry = ingest.ingest_dataset(body, ExplicitVRLittleEndian, ds.SOPClassUID, ds.SOPInstanceUID)
    assert retry.written and store.objects[key] == whole and seal_holds([whole])
    assert queue.keys == [key]
    again = ingest.ingest_dataset(body, ExplicitVRLittleEndian, ds.SOPClassUID, ds.SOPInstanceUID)
    assert not again.written and (store.creates, store.puts) == (0, 1)


def test_resend_of_identical_instance_does_not_write_again(
    ingest: IngestService, store: MemoryStore, queue: RecordingQueue
) -> None:
    data = to_part10_bytes(make_dataset())
    first, second = ingest.ingest_file(data), ingest.ingest_file(data)
    assert (first.written, second.written) == (True, False)
    assert store.puts == 1
    assert queue.keys == [first.key, first.key]  # re-queued: harmless, and repairs a lost task


def test_changed_content_under_same_uid_replaces_the_object(ingest: IngestService, store: MemoryStore) -> None:
    ds = make_dataset()
    ingest.ingest_file(to_part10_bytes(ds))
    ds.PatientName = "Corrected^Name"
    result = ingest.ingest_file(to_part10_bytes(ds))
    assert result.written
    assert dcmread(io.BytesIO(store.objects[result.key])).PatientName == "Corrected^Name"


def test_command_uid_mismatch_is_rejected_before_any_write(ingest: IngestService, store: MemoryStore) -> None:
    ds = make_dataset()
    body = dataset_bytes(to_part10_bytes(ds))
    with pytest.raises(DatasetMismatch, match="SOPInstanceUID"):
        ingest.ingest_dataset(body, ExplicitVRLittleEndian, ds.SOPClassUID, new_uid(), None)
    with pytest.raises(DatasetMismatch, match="SOPClassUID"):
        ingest.ingest_dataset(body, ExplicitVRLittleEndian, "1.2.840.10008.5.1.4.1.1.4", ds.SOPInstanceUID, None)
    assert store.objects == {}


@pytest.mark.parametrize("field", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
@pytest.mark.parametrize("value", ["../../x", "1.2.3a", "1." + "9" * 64])
def test_malformed_uids_never_reach_the_store(
    ingest: IngestService, store: MemoryStore, field: str, value: str
) -> None:
    ds = make_dataset()
    setattr(ds, field, value)
    if field == "SOPInstanceUID":
        ds.file_meta.MediaStorageSOPInstanceUID = value
    with pytest.raises(InvalidUID, match=field):
        ingest.ingest_file(to_part10_bytes(ds))
    assert store.objects == {}


def test_garbage_truncated_and_non_dicom_input(ingest: IngestService, store: MemoryStore) -> None:
    data = to_part10_bytes(make_dataset(rows=32, columns=32))
    with pytest.raises(InvalidDicom):
        ingest.ingest_file(b"not dicom at all")
    with pytest.raises(InvalidDicom):
        ingest.ingest_file(data[: len(data) - 100])
    with pytest.raises(InvalidDicom):
        ingest.ingest_file(data[:132] + b"\xff" * 300)
    assert store.objects == {}


def test_broker_outage_removes_the_new_object(ingest: IngestService, store: MemoryStore, queue: RecordingQueue) -> None:
    queue.down = True
    with pytest.raises(QueueUnavailable):
        ingest.ingest_file(to_part10_bytes(make_dataset()))
    assert store.objects == {}


def test_broker_outage_keeps_an_object_accepted_earlier(
    ingest: IngestService, store: MemoryStore, queue: RecordingQueue
) -> None:
    data = to_part10_bytes(make_dataset())
    accepted = ingest.ingest_file(data)
    queue.down = True
    with pytest.raises(QueueUnavailable):
        ingest.ingest_file(data)
    assert store.objects[accepted.key] == data


def test_storage_outage_is_reported_and_nothing_queued(
    ingest: IngestService, store: MemoryStore, queue: RecordingQueue
) -> None:
    store.fail_writes = True
    with pytest.raises(StorageUnavailable):
        ingest.ingest_file(to_part10_bytes(make_dataset()))
    assert queue.keys == []


@pytest.mark.parametrize("source_ae", ["MODALITY1", "CT01", None])
def test_part10_file_meta_is_valid_for_odd_and_even_lengths(source_ae: str | None) -> None:
    ds = make_dataset()
    body = dataset_bytes(to_part10_bytes(ds))
    for sop in (new_uid(), "1.2.3.45", "1.2.3.4"):  # odd and even lengths are padded with NUL
        data = part10_from_dataset(body, "1.2.840.10008.1.2.1", str(ds.SOPClassUID), sop, source_ae)
        parsed = dcmread(io.BytesIO(data))
        meta = parsed.file_meta
        assert meta.MediaStorageSOPInstanceUID == sop
        assert meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert meta.get("SourceApplicationEntityTitle") == source_ae
        assert meta.FileMetaInformationGroupLength == meta_end(data) - 144
        assert data[meta_end(data) :] == body
        assert parsed.PatientName == ds.PatientName
