"""C-GET SCP: DCMTK getscu retrieving a series, transcoding on the same association, failed sub-operations."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    MRImageStorage,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
)

from gateway.dimse import status
from tests.factories import make_dataset, new_uid
from tests.fixtures.qr import QRGateway, dcmtk, needs_dcmtk, qr_gateway
from tests.part10 import assert_same_content, dataset_bytes

pytestmark = pytest.mark.integration
GET = str(StudyRootQueryRetrieveInformationModelGet)
MPEG2 = UID("1.2.840.10008.1.2.4.100")  # MPEG2 Main Profile @ Main Level: no decoder here


@pytest.fixture(params=["open", "registered"])
def gateway(request: pytest.FixtureRequest, tmp_path: Path, broker_url: str) -> Iterator[QRGateway]:
    with qr_gateway(tmp_path, broker_url, association_policy=request.param) as gateway:
        if request.param == "registered":
            gateway.register("GETSCU", operations=["get"])
        yield gateway


@needs_dcmtk
@pytest.mark.parametrize("folder", ["series1", "series2"], ids=["explicit-le", "implicit-le"])
def test_getscu_retrieves_a_series(gateway: QRGateway, tmp_path: Path, folder: str) -> None:
    """getscu offers explicit VR little endian only: explicit objects arrive byte for byte, implicit ones
    are re-encoded explicit (lossless) with the same elements and pixels."""
    paths = [path for path in gateway.corpus if path.parent.name == folder]
    members = [dcmread(path, stop_before_pixels=True) for path in paths]
    out = tmp_path / "got"
    out.mkdir()
    args = ["getscu", "-v", "-S", "-aet", "GETSCU", "-aec", "DICOMGW", "+B", "-od", str(out)]
    args += ["127.0.0.1", str(gateway.port), "-k", "QueryRetrieveLevel=SERIES"]
    args += ["-k", f"StudyInstanceUID={members[0].StudyInstanceUID}"]
    args += ["-k", f"SeriesInstanceUID={members[0].SeriesInstanceUID}"]
    result = dcmtk(*args)
    assert result.returncode == 0, result.stderr
    assert "Received C-GET Response (Success)" in result.stderr, result.stderr
    assert f"Number of Completed Suboperations : {len(members)}" in result.stderr, result.stderr
    files = {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in out.iterdir()}
    assert sorted(files) == sorted(ds.SOPInstanceUID for ds in members)
    for path, ds in zip(paths, members, strict=True):
        got = files[ds.SOPInstanceUID].read_bytes()
        assert dcmread(io.BytesIO(got), stop_before_pixels=True).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        if ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian:
            assert dataset_bytes(got) == dataset_bytes(gateway.stored(ds))
        else:
            assert_same_content(got, path)


class Requester:
    """A pynetdicom C-GET SCU offering to store `sop_class` in explicit VR little endian only (as SCP)."""

    def __init__(self, *sop_classes: str) -> None:
        self.received: list[Dataset] = []
        self.ae = AE(ae_title="GETSCU")
        self.ae.add_requested_context(GET)
        for sop_class in sop_classes:
            self.ae.add_requested_context(sop_class, [ExplicitVRLittleEndian])
        self.roles = [build_role(sop_class, scp_role=True) for sop_class in sop_classes]

    def _store(self, event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append(ds)
        return 0x0000

    def get(self, port: int, identifier: Dataset) -> list[Dataset]:
        assoc = self.ae.associate(
            "127.0.0.1", port, ae_title="DICOMGW", ext_neg=self.roles, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )
        assert assoc.is_established
        try:
            return [rsp for rsp, _ in assoc.send_c_get(identifier, GET)]
        finally:
            assoc.release()


def series_identifier(ds: Dataset) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.StudyInstanceUID = ds.StudyInstanceUID
    identifier.SeriesInstanceUID = ds.SeriesInstanceUID
    return identifier


def test_get_transcodes_big_endian_and_deflated_to_what_the_requester_accepts(gateway: QRGateway) -> None:
    members = [ds for path, ds in zip(gateway.corpus, gateway.datasets(), strict=True) if path.parent.name == "mr"]
    requester = Requester(MRImageStorage)
    responses = requester.get(gateway.port, series_identifier(members[0]))
    assert int(responses[-1].Status) == status.SUCCESS
    assert int(responses[-1].NumberOfCompletedSuboperations) == len(members)
    by_uid = {ds.SOPInstanceUID: ds for ds in requester.received}
    for path in (p for p in gateway.corpus if p.parent.name == "mr"):
        source = dcmread(path)
        got = by_uid[source.SOPInstanceUID]
        assert got.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert np.array_equal(got.pixel_array, source.pixel_array), path


def test_undecodable_instance_is_a_failed_sub_operation(gateway: QRGateway) -> None:
    """Stored in a syntax the requester did not accept and that cannot be decoded: reported, not sent."""
    ds = make_dataset(rows=8, columns=8, SOPClassUID=SecondaryCaptureImageStorage, Modality="OT")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = MPEG2
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    gateway.services.indexing.index_object(gateway.services.ingest.ingest_file(buffer.getvalue()).key)
    requester = Requester(str(SecondaryCaptureImageStorage))
    responses = requester.get(gateway.port, series_identifier(ds))
    final = responses[-1]
    assert int(final.Status) == status.RETRIEVE_UNABLE_TO_PERFORM_SUBOPERATIONS  # all sub-operations failed
    assert (int(final.NumberOfFailedSuboperations), int(final.NumberOfCompletedSuboperations)) == (1, 0)
    assert requester.received == []


def test_get_refusals(gateway: QRGateway) -> None:
    requester = Requester(MRImageStorage)
    bad = Dataset()
    bad.QueryRetrieveLevel = "SERIES"
    bad.StudyInstanceUID = new_uid()  # no SeriesInstanceUID
    responses = requester.get(gateway.port, bad)
    assert [int(r.Status) for r in responses] == [status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS]
    assert responses[0].OffendingElement == 0x0020000E
    gateway.register("NOGET", operations=["find"])
    requester.ae.ae_title = "NOGET"
    assoc = requester.ae.associate("127.0.0.1", gateway.port, ae_title="DICOMGW", ext_neg=requester.roles)
    assert assoc.is_established
    try:
        assert [cx.abstract_syntax for cx in assoc.rejected_contexts] == [GET]
    finally:
        assoc.release()
