"""The third-party `dicomweb-client`, unmodified, against a running gateway (uvicorn + real Celery worker).

The corpus is stored with STOW-RS, indexed by a real worker, then read back with every WADO-RS call;
expectations come from the corpus files through pydicom, never from the gateway's answers.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset, dcmread
from pydicom.encaps import generate_frames
from sqlalchemy import func, select

from gateway.index.models import Instance
from gateway.services import Services
from testdata.generate import generate_corpus, pydicom_test_files
from tests.fixtures.gateway import gateway_services, make_settings, wait_for, worker_process
from tests.fixtures.http import running_api
from tests.fixtures.servers import RedisServer
from tests.part10 import comparable

pytestmark = pytest.mark.integration

_databases = itertools.count(3000)


@dataclass
class Gateway:
    services: Services
    client: DICOMwebClient
    files: dict[str, Path]  # SOP Instance UID -> corpus file
    url: str  # the DICOMweb base URL

    def source(self, sop: str) -> Dataset:
        return dcmread(self.files[sop])

    def find(self, suffix: str) -> tuple[str, Path]:
        """The SOP Instance UID and path of the corpus file whose path ends with `suffix`."""
        return next((sop, path) for sop, path in self.files.items() if path.as_posix().endswith(suffix))


def _corpus(folder: Path) -> dict[str, Path]:
    files = {}
    for path in generate_corpus(folder) + pydicom_test_files():
        ds = dcmread(path, stop_before_pixels=True)
        if ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID:  # rtplan.dcm's meta disagrees
            files[str(ds.SOPInstanceUID)] = path
    return files


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("dicomweb")
    settings = make_settings(root / "data", broker_url=redis_server.url(next(_databases)))
    files = _corpus(root / "corpus")
    with (
        gateway_services(settings) as services,
        worker_process(settings, root / "worker.log"),
        running_api(services) as url,
    ):
        client = DICOMwebClient(url=f"{url}/dicomweb")
        response = client.store_instances([dcmread(path) for path in files.values()])
        stored = {str(item.ReferencedSOPInstanceUID) for item in response.ReferencedSOPSequence}
        assert stored == set(files)
        assert "FailedSOPSequence" not in response

        def indexed() -> bool:
            with services.repository.sessions() as session:
                return int(session.execute(select(func.count(Instance.pk))).scalar_one()) == len(files)

        wait_for(indexed, timeout=60, what="every stored instance indexed")
        yield Gateway(services, client, files, f"{url}/dicomweb")


def _same(received: Dataset, source: Dataset) -> None:
    assert received.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
    assert comparable(received) == comparable(source)


def test_search_for_studies_lists_every_study(gateway: Gateway) -> None:
    expected = {str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in gateway.files.values()}
    found = {study["0020000D"]["Value"][0] for study in gateway.client.search_for_studies()}
    assert found == expected


def test_retrieve_study_as_stored_equals_the_sources(gateway: Gateway) -> None:
    for study in {str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in gateway.files.values()}:
        received = gateway.client.retrieve_study(study, media_types=(("application/dicom", "*"),))
        expected = [
            sop for sop, p in gateway.files.items() if dcmread(p, stop_before_pixels=True).StudyInstanceUID == study
        ]
        assert sorted(str(ds.SOPInstanceUID) for ds in received) == sorted(expected)
        for ds in received:
            _same(ds, gateway.source(str(ds.SOPInstanceUID)))


def test_retrieve_series_and_instance(gateway: Gateway) -> None:
    sop, path = gateway.find("us/cine.dcm")
    source = dcmread(path)
    series = gateway.client.retrieve_series(
        source.StudyInstanceUID, source.SeriesInstanceUID, media_types=(("application/dicom", "*"),)
    )
    assert [str(ds.SOPInstanceUID) for ds in series] == [sop]
    instance = gateway.client.retrieve_instance(source.StudyInstanceUID, source.SeriesInstanceUID, sop)
    _same(instance, source)


@pytest.mark.parametrize("name", ["key-image-jpeg.dcm", "mr/001.dcm"])
def test_explicit_little_endian_retrieve_transcodes_what_was_stored_otherwise(gateway: Gateway, name: str) -> None:
    # key-image-jpeg.dcm is JPEG baseline; mr/001.dcm is explicit VR big endian.
    sop, path = gateway.find(name)
    source = dcmread(path)
    instance = gateway.client.retrieve_instance(
        source.StudyInstanceUID,
        source.SeriesInstanceUID,
        sop,
        media_types=(("application/dicom", "1.2.840.10008.1.2.1"),),
    )
    assert instance.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert np.array_equal(instance.pixel_array, source.pixel_array)


def test_study_metadata_matches_the_source_headers(gateway: Gateway) -> None:
    ct = [p for p in gateway.files.values() if p.parent.parent.name == "ct"]
    study = dcmread(ct[0], stop_before_pixels=True).StudyInstanceUID
    metadata = gateway.client.retrieve_study_metadata(study)
    assert len(metadata) == len(ct)
    for item in metadata:
        # dicomweb-client rewrites BulkDataURIs onto its own base URL; the path is what we check here.
        assert item["7FE00010"]["BulkDataURI"].endswith("/bulkdata/7FE00010")
        received = Dataset.from_json(item, bulk_data_uri_handler=lambda *_: None)
        source = dcmread(gateway.files[str(received.SOPInstanceUID)], stop_before_pixels=True)
        for element in source:
            if element.VR in ("OB", "OW", "UN") or element.tag.element == 0:
                continue
            assert received[element.tag].value == element.value, element


def _frames(path: Path) -> tuple[Dataset, list[bytes]]:
    source = dcmread(path)
    if source.file_meta.TransferSyntaxUID.is_encapsulated:
        return source, list(generate_frames(source.PixelData, number_of_frames=int(source.get("NumberOfFrames", 1))))
    frames = int(source.get("NumberOfFrames", 1))
    size = len(source.PixelData) // frames
    return source, [source.PixelData[n * size : (n + 1) * size] for n in range(frames)]


def test_retrieve_native_frames(gateway: Gateway) -> None:
    sop, path = gateway.find("us/cine.dcm")
    source, frames = _frames(path)
    received = gateway.client.retrieve_instance_frames(
        source.StudyInstanceUID, source.SeriesInstanceUID, sop, frame_numbers=[1, 4, 10]
    )
    assert received == [frames[0], frames[3], frames[9]]
    decoded = source.pixel_array
    assert np.array_equal(np.frombuffer(received[1], dtype=np.uint8).reshape(decoded.shape[1:]), decoded[3])


@pytest.mark.parametrize("name", ["key-image-jpeg.dcm", "examples_ybr_color.dcm", "JPEG2000.dcm"])
def test_retrieve_compressed_frames_as_stored_and_decoded(gateway: Gateway, name: str) -> None:
    sop, path = gateway.find(name)
    source, frames = _frames(path)
    numbers = [1, len(frames)] if len(frames) > 1 else [1]
    stored = gateway.client.retrieve_instance_frames(
        source.StudyInstanceUID, source.SeriesInstanceUID, sop, frame_numbers=numbers
    )
    assert stored == [frames[n - 1] for n in numbers]
    decoded = gateway.client.retrieve_instance_frames(
        source.StudyInstanceUID,
        source.SeriesInstanceUID,
        sop,
        frame_numbers=[numbers[-1]],
        media_types=("application/octet-stream",),
    )
    pixels = source.pixel_array if len(frames) == 1 else source.pixel_array[numbers[-1] - 1]
    assert decoded[0] == np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()


def test_stow_of_an_instance_again_is_idempotent(gateway: Gateway) -> None:
    path = next(iter(gateway.files.values()))
    response = gateway.client.store_instances([dcmread(path)])
    assert len(response.ReferencedSOPSequence) == 1
    keys = list(gateway.services.store.iter_keys())
    assert len(keys) == len(gateway.files)


def test_retrieve_of_unknown_study_is_an_error(gateway: Gateway) -> None:
    from requests import HTTPError

    with pytest.raises(HTTPError) as error:
        gateway.client.retrieve_study("1.2.3.4.5.6.7")
    assert error.value.response.status_code == 404
    assert error.value.response.headers["content-type"] == "application/problem+json"


def _windowed(pixels: np.ndarray, source: Dataset, center: float, width: float) -> np.ndarray:
    # PS3.3 C.11.2.1.2.1, computed here independently of the gateway.
    values = pixels.astype(np.float64) * float(source.get("RescaleSlope", 1)) + float(source.get("RescaleIntercept", 0))
    return np.rint(((values - (center - 0.5)) / (width - 1) + 0.5).clip(0, 1) * 255).astype(np.uint8)


def test_rendered_instance_as_png_applies_the_requested_window(gateway: Gateway) -> None:
    from PIL import Image

    sop, path = gateway.find("ct/series1/002.dcm")
    source = dcmread(path)
    png = gateway.client.retrieve_instance_rendered(
        source.StudyInstanceUID,
        source.SeriesInstanceUID,
        sop,
        media_types=("image/png",),
        params={"window": "40,400,linear"},
    )
    image = np.asarray(Image.open(io.BytesIO(png)))
    assert np.array_equal(image, _windowed(source.pixel_array, source, 40, 400))


def test_rendered_frame_and_thumbnail_are_jpeg_images(gateway: Gateway) -> None:
    from PIL import Image

    sop, path = gateway.find("examples_ybr_color.dcm")
    source = dcmread(path, stop_before_pixels=True)
    jpeg = gateway.client.retrieve_instance_frames_rendered(
        source.StudyInstanceUID, source.SeriesInstanceUID, sop, frame_numbers=[2], media_types=("image/jpeg",)
    )
    image = Image.open(io.BytesIO(jpeg))
    assert (image.format, image.size, image.mode) == ("JPEG", (source.Columns, source.Rows), "RGB")
    # dicomweb-client has no thumbnail call; a plain GET is what viewers do.
    thumbnail = httpx.get(
        f"{gateway.url}/studies/{source.StudyInstanceUID}/series/{source.SeriesInstanceUID}/thumbnail"
    )
    assert thumbnail.headers["content-type"] == "image/jpeg"
    small = Image.open(io.BytesIO(thumbnail.content))
    assert small.format == "JPEG" and max(small.size) == 128


def test_wado_uri_returns_the_stored_object_and_a_rendered_image(gateway: Gateway) -> None:
    from PIL import Image

    sop, path = gateway.find("mr/002.dcm")  # deflated explicit VR little endian
    source = dcmread(path, stop_before_pixels=True)
    query = {"requestType": "WADO", "studyUID": source.StudyInstanceUID, "seriesUID": source.SeriesInstanceUID}
    query["objectUID"] = sop
    dicom = httpx.get(f"{gateway.url}/wado", params={**query, "contentType": "application/dicom"})
    assert dicom.headers["content-type"] == "application/dicom"
    _same(dcmread(io.BytesIO(dicom.content)), dcmread(path))
    jpeg = httpx.get(f"{gateway.url}/wado", params={**query, "rows": "16"})
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).size == (24, 16)  # 48x32 bounded to 16 rows
    wrong = httpx.get(f"{gateway.url}/wado", params={**query, "requestType": "WADO-RS"})
    assert wrong.status_code == 400 and wrong.json()["parameter"] == "requestType"


def _headers(gateway: Gateway) -> list[Dataset]:
    return [dcmread(p, stop_before_pixels=True) for p in gateway.files.values()]


def test_search_with_filters_at_every_level(gateway: Gateway) -> None:
    headers = _headers(gateway)
    mr = {str(h.StudyInstanceUID) for h in headers if h.get("PatientID") == "GW-0002"}
    found = gateway.client.search_for_studies(search_filters={"PatientID": "GW-0002"})
    assert {s["0020000D"]["Value"][0] for s in found} == mr
    dated = {str(h.StudyInstanceUID) for h in headers if "20240101" <= str(h.get("StudyDate", "")) <= "20240331"}
    found = gateway.client.search_for_studies(search_filters={"StudyDate": "20240101-20240331"})
    assert {s["0020000D"]["Value"][0] for s in found} == dated and dated

    ct_study = next(str(h.StudyInstanceUID) for h in headers if h.get("PatientID") == "GW-0001")
    series = {str(h.SeriesInstanceUID) for h in headers if str(h.StudyInstanceUID) == ct_study}
    found = gateway.client.search_for_series(ct_study, search_filters={"Modality": "CT"})
    assert {s["0020000E"]["Value"][0] for s in found} == series

    cine = next(h for h in headers if h.get("NumberOfFrames", 1) == 10)
    found = gateway.client.search_for_instances(search_filters={"SOPInstanceUID": str(cine.SOPInstanceUID)})
    assert [i["00080018"]["Value"][0] for i in found] == [str(cine.SOPInstanceUID)]
    assert found[0]["00280008"]["Value"] == [10]
    everything = gateway.client.search_for_instances(ct_study)
    assert len(everything) == sum(1 for h in headers if str(h.StudyInstanceUID) == ct_study)
