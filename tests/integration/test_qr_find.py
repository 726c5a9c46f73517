"""C-FIND SCP against DCMTK findscu: every level of both information models, expectations from the corpus.

What each query should find is computed here from the corpus files with pydicom (fnmatch for wild
cards, string comparison for DA ranges), never from the gateway's answers.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from gateway.dimse import status
from tests.fixtures.qr import QRGateway, dcmtk, needs_dcmtk, qr_gateway, read_responses
from tests.fixtures.servers import RedisServer

pytestmark = pytest.mark.integration

UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}


@pytest.fixture(scope="module", params=["open", "registered"])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[QRGateway]:
    # One gateway per policy for the whole module: these tests only read (and register FINDSCU once).
    tmp_path = tmp_path_factory.mktemp(f"qr-find-{request.param}")
    broker_url = redis_server.url(4090 + ["open", "registered"].index(request.param))
    with qr_gateway(tmp_path, broker_url, association_policy=request.param) as gateway:
        if request.param == "registered":
            gateway.register("FINDSCU", operations=["find"])
        yield gateway


def by_folder(gateway: QRGateway, folder: str) -> list[Dataset]:
    return [ds for path, ds in zip(gateway.corpus, gateway.datasets(), strict=True) if path.parent.name == folder]


def uid(gateway: QRGateway, folder: str, keyword: str, index: int = 0) -> str:
    return str(sorted({str(ds[keyword].value) for ds in by_folder(gateway, folder)})[index])


@dataclass(frozen=True)
class Case:
    """A findscu query: model, level, keys (a function of the corpus UIDs) and the corpus predicate it means."""

    name: str
    patient_root: bool
    level: str
    keys: Callable[[QRGateway], dict[str, str]]
    matches: Callable[[QRGateway, Dataset], bool]


def _ct(g: QRGateway) -> str:
    return uid(g, "series1", "StudyInstanceUID")


def _ct_series(g: QRGateway, folder: str) -> str:
    return uid(g, folder, "SeriesInstanceUID")


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "")


CASES = [
    # Study Root, STUDY level
    Case(
        "study-wildcard",
        False,
        "STUDY",
        lambda g: {"StudyDescription": "*Thorax*"},
        lambda g, ds: fnmatch.fnmatchcase(_text(ds, "StudyDescription"), "*Thorax*"),
    ),
    Case(
        "study-range",
        False,
        "STUDY",
        lambda g: {"StudyDate": "20240101-20240331"},
        lambda g, ds: "20240101" <= _text(ds, "StudyDate") <= "20240331",
    ),
    Case(
        "study-uid-list",
        False,
        "STUDY",
        lambda g: {"StudyInstanceUID": f"{_ct(g)}\\{uid(g, 'us', 'StudyInstanceUID')}"},
        lambda g, ds: ds.StudyInstanceUID in (_ct(g), uid(g, "us", "StudyInstanceUID")),
    ),
    # Study Root, SERIES level (hierarchical: one StudyInstanceUID)
    Case(
        "series-wildcard",
        False,
        "SERIES",
        lambda g: {"StudyInstanceUID": _ct(g), "SeriesDescription": "*R*"},  # case-sensitive: not "Axial 2.5mm"
        lambda g, ds: ds.StudyInstanceUID == _ct(g) and fnmatch.fnmatchcase(_text(ds, "SeriesDescription"), "*R*"),
    ),
    Case(
        "series-range",
        False,
        "SERIES",
        lambda g: {"StudyInstanceUID": uid(g, "us", "StudyInstanceUID"), "StudyDate": "20241201-"},
        lambda g, ds: ds.StudyInstanceUID == uid(g, "us", "StudyInstanceUID") and _text(ds, "StudyDate") >= "20241201",
    ),
    Case(
        "series-uid-list",
        False,
        "SERIES",
        lambda g: {
            "StudyInstanceUID": _ct(g),
            "SeriesInstanceUID": f"{_ct_series(g, 'series1')}\\{_ct_series(g, 'series3')}",
        },
        lambda g, ds: ds.SeriesInstanceUID in (_ct_series(g, "series1"), _ct_series(g, "series3")),
    ),
    # Study Root, IMAGE level (one StudyInstanceUID and one SeriesInstanceUID)
    Case(
        "image-wildcard",
        False,
        "IMAGE",
        lambda g: {
            "StudyInstanceUID": _ct(g),
            "SeriesInstanceUID": _ct_series(g, "series2"),
            "StudyDescription": "CT*",
        },
        lambda g, ds: (
            ds.SeriesInstanceUID == _ct_series(g, "series2")
            and fnmatch.fnmatchcase(_text(ds, "StudyDescription"), "CT*")
        ),
    ),
    Case(
        "image-range",
        False,
        "IMAGE",
        lambda g: {"StudyInstanceUID": _ct(g), "SeriesInstanceUID": _ct_series(g, "series1"), "StudyTime": "1000-1030"},
        lambda g, ds: (
            ds.SeriesInstanceUID == _ct_series(g, "series1") and "1000" <= _text(ds, "StudyTime")[:4] <= "1030"
        ),
    ),
    Case(
        "image-uid-list",
        False,
        "IMAGE",
        lambda g: {
            "StudyInstanceUID": _ct(g),
            "SeriesInstanceUID": _ct_series(g, "series1"),
            "SOPInstanceUID": f"{uid(g, 'series1', 'SOPInstanceUID', 0)}\\{uid(g, 'series1', 'SOPInstanceUID', 2)}",
        },
        lambda g, ds: (
            ds.SOPInstanceUID in (uid(g, "series1", "SOPInstanceUID", 0), uid(g, "series1", "SOPInstanceUID", 2))
        ),
    ),
    # Patient Root, PATIENT level (no UIDs at this level)
    Case(
        "patient-wildcard",
        True,
        "PATIENT",
        lambda g: {"PatientID": "GW-000?"},
        lambda g, ds: fnmatch.fnmatchcase(_text(ds, "PatientID"), "GW-000?"),
    ),
    Case(
        "patient-range",
        True,
        "PATIENT",
        lambda g: {"PatientBirthDate": "19600101-19751231"},
        lambda g, ds: "19600101" <= _text(ds, "PatientBirthDate") <= "19751231",
    ),
    # Patient Root, STUDY level (one PatientID)
    Case(
        "patient-study-wildcard",
        True,
        "STUDY",
        lambda g: {"PatientID": "GW-0002", "AccessionNumber": "ACC-??-*"},
        lambda g, ds: ds.PatientID == "GW-0002" and fnmatch.fnmatchcase(_text(ds, "AccessionNumber"), "ACC-??-*"),
    ),
    Case(
        "patient-study-range",
        True,
        "STUDY",
        lambda g: {"PatientID": "GW-0001", "StudyDate": "-20240201"},
        lambda g, ds: ds.PatientID == "GW-0001" and _text(ds, "StudyDate") <= "20240201",
    ),
    Case(
        "patient-study-uid-list",
        True,
        "STUDY",
        lambda g: {"PatientID": "GW-0003", "StudyInstanceUID": f"{_ct(g)}\\{uid(g, 'us', 'StudyInstanceUID')}"},
        lambda g, ds: ds.PatientID == "GW-0003" and ds.StudyInstanceUID in (_ct(g), uid(g, "us", "StudyInstanceUID")),
    ),
    # Patient Root, SERIES and IMAGE levels
    Case(
        "patient-series-wildcard",
        True,
        "SERIES",
        lambda g: {"PatientID": "GW-0002", "StudyInstanceUID": uid(g, "mr", "StudyInstanceUID"), "Modality": "M?"},
        lambda g, ds: ds.PatientID == "GW-0002" and fnmatch.fnmatchcase(_text(ds, "Modality"), "M?"),
    ),
    Case(
        "patient-series-range",
        True,
        "SERIES",
        lambda g: {"PatientID": "GW-0001", "StudyInstanceUID": _ct(g), "StudyDate": "20240115-20240115"},
        lambda g, ds: ds.PatientID == "GW-0001" and _text(ds, "StudyDate") == "20240115",
    ),
    Case(
        "patient-series-uid-list",
        True,
        "SERIES",
        lambda g: {
            "PatientID": "GW-0001",
            "StudyInstanceUID": _ct(g),
            "SeriesInstanceUID": f"{_ct_series(g, 'series2')}\\1.2.3",
        },
        lambda g, ds: ds.SeriesInstanceUID == _ct_series(g, "series2"),
    ),
    Case(
        "patient-image-wildcard",
        True,
        "IMAGE",
        lambda g: {
            "PatientID": "GW-0003",
            "StudyInstanceUID": uid(g, "us", "StudyInstanceUID"),
            "SeriesInstanceUID": uid(g, "us", "SeriesInstanceUID", 0),
            "PatientName": "Yamada*",
        },
        lambda g, ds: (
            ds.SeriesInstanceUID == uid(g, "us", "SeriesInstanceUID", 0)
            and fnmatch.fnmatchcase(str(ds.PatientName).upper(), "YAMADA*")
        ),  # PN matching ignores case
    ),
    Case(
        "patient-image-range",
        True,
        "IMAGE",
        lambda g: {
            "PatientID": "GW-0002",
            "StudyInstanceUID": uid(g, "mr", "StudyInstanceUID"),
            "SeriesInstanceUID": uid(g, "mr", "SeriesInstanceUID"),
            "PatientBirthDate": "19800101-19901231",
        },
        lambda g, ds: ds.PatientID == "GW-0002" and "19800101" <= _text(ds, "PatientBirthDate") <= "19901231",
    ),
    Case(
        "patient-image-uid-list",
        True,
        "IMAGE",
        lambda g: {
            "PatientID": "GW-0002",
            "StudyInstanceUID": uid(g, "mr", "StudyInstanceUID"),
            "SeriesInstanceUID": uid(g, "mr", "SeriesInstanceUID"),
            "SOPInstanceUID": "\\".join(sorted(ds.SOPInstanceUID for ds in by_folder(g, "mr"))[:2]),
        },
        lambda g, ds: ds.SOPInstanceUID in sorted(d.SOPInstanceUID for d in by_folder(g, "mr"))[:2],
    ),
]

RETURN_KEYS = {
    "PATIENT": [
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedInstances",
    ],
    "STUDY": [
        "PatientName",
        "StudyInstanceUID",
        "StudyDate",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ],
    "SERIES": ["PatientName", "SeriesInstanceUID", "Modality", "SeriesNumber", "NumberOfSeriesRelatedInstances"],
    "IMAGE": ["PatientName", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"],
}


def findscu(
    gateway: QRGateway, out: Path, patient_root: bool, level: str, keys: dict[str, str], calling: str = "FINDSCU"
) -> str:
    """Run findscu with `keys` (and the level's return keys); return its log. Responses land in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    args = ["findscu", "-v", "-P" if patient_root else "-S", "-aet", calling, "-aec", "DICOMGW", "-X", "-od", str(out)]
    args += ["127.0.0.1", str(gateway.port), "-k", f"QueryRetrieveLevel={level}"]
    for keyword, value in keys.items():
        args += ["-k", f"{keyword}={value}"]
    for keyword in RETURN_KEYS[level]:
        if keyword not in keys:
            args += ["-k", keyword]
    result = dcmtk(*args)
    assert result.returncode == 0, result.stderr
    return result.stderr


def check_values(gateway: QRGateway, level: str, response: Dataset) -> None:
    """The response's values agree with the corpus entity it names."""
    key = UNIQUE[level]
    members = [ds for ds in gateway.datasets() if str(ds.get(key, "")) == str(response[key].value)]
    assert members, response
    first = members[0]
    assert str(response.PatientName) == str(first.get("PatientName", ""))
    if level == "PATIENT":
        assert int(response.NumberOfPatientRelatedStudies) == len({ds.StudyInstanceUID for ds in members})
        assert int(response.NumberOfPatientRelatedInstances) == len(members)
    elif level == "STUDY":
        assert int(response.NumberOfStudyRelatedInstances) == len(members)
        assert int(response.NumberOfStudyRelatedSeries) == len({ds.SeriesInstanceUID for ds in members})
        modalities = response.ModalitiesInStudy
        assert sorted([modalities] if isinstance(modalities, str) else modalities) == sorted(
            {ds.Modality for ds in members}
        )
        assert str(response.StudyDate) == str(first.get("StudyDate", ""))
    elif level == "SERIES":
        assert int(response.NumberOfSeriesRelatedInstances) == len(members)
        assert (response.Modality, int(response.SeriesNumber)) == (first.Modality, int(first.SeriesNumber))
    else:
        assert (response.SOPClassUID, int(response.InstanceNumber)) == (first.SOPClassUID, int(first.InstanceNumber))


@needs_dcmtk
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_findscu_finds_what_the_corpus_says(gateway: QRGateway, case: Case, tmp_path: Path) -> None:
    expected = {str(ds.get(UNIQUE[case.level], "")) for ds in gateway.datasets() if case.matches(gateway, ds)}
    assert expected, "a case must expect at least one match"
    findscu(gateway, tmp_path / "rsp", case.patient_root, case.level, case.keys(gateway))
    responses = read_responses(tmp_path / "rsp")
    assert sorted(str(r[UNIQUE[case.level]].value) for r in responses) == sorted(expected)
    for response in responses:
        assert response.QueryRetrieveLevel == case.level
        assert response.RetrieveAETitle == "DICOMGW"
        check_values(gateway, case.level, response)


@needs_dcmtk
@pytest.mark.parametrize(
    ("charset", "name", "encoding"),
    [("ISO_IR 100", "Müller*", "latin-1"), ("\\ISO 2022 IR 87", "山田*", "iso2022_jp")],
    ids=["latin-1", "iso-2022-jp"],
)
def test_query_in_its_specific_character_set(
    gateway: QRGateway, tmp_path: Path, charset: str, name: str, encoding: str
) -> None:
    """The query's PN value is read in its character set; answers come back in it, decoded right."""
    out = tmp_path / "rsp"
    out.mkdir()
    args: list[str | bytes] = ["findscu", "-v", "-S", "-aet", "FINDSCU", "-aec", "DICOMGW", "-X", "-od", str(out)]
    args += ["127.0.0.1", str(gateway.port), "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID"]
    args += ["-k", f"SpecificCharacterSet={charset}", "-k", b"PatientName=" + name.encode(encoding)]
    result = dcmtk(*args)
    assert result.returncode == 0, result.stderr
    responses = read_responses(out)
    pattern = name.rstrip("*")
    expected = {ds.StudyInstanceUID for ds in gateway.datasets() if pattern in str(ds.PatientName)}
    assert len(expected) == 1
    assert [r.StudyInstanceUID for r in responses] == list(expected)
    response = responses[0]
    assert response.SpecificCharacterSet == (charset if "\\" not in charset else ["", "ISO 2022 IR 87"])
    corpus = next(ds for ds in gateway.datasets() if ds.StudyInstanceUID in expected)
    assert str(response.PatientName) == str(corpus.PatientName)


@needs_dcmtk
def test_caller_without_find_permission_is_refused(gateway: QRGateway, tmp_path: Path) -> None:
    gateway.register("STOREONLY", operations=["store"])
    log = findscu(gateway, tmp_path / "rsp", False, "STUDY", {}, calling="STOREONLY")
    # DCMTK has no name for the general status 0x0124 "Refused: Not authorized" (PS3.7 Annex C) in C-FIND.
    assert "Final Find Response (Unknown Status: 0x124)" in log, log
    assert read_responses(tmp_path / "rsp") == []


@needs_dcmtk
def test_unknown_caller_is_rejected_only_when_registered_policy(gateway: QRGateway, tmp_path: Path) -> None:
    out = tmp_path / "rsp"
    out.mkdir()
    args = ["findscu", "-S", "-aet", "NOBODY", "-aec", "DICOMGW", "-X", "-od", str(out), "127.0.0.1"]
    result = dcmtk(*args, str(gateway.port), "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID")
    if gateway.services.settings.association_policy == "registered":
        assert result.returncode != 0
        assert "Calling AE Title Not Recognized" in result.stderr, result.stderr
        assert read_responses(out) == []
    else:
        assert result.returncode == 0, result.stderr
        assert len(read_responses(out)) == 4


def c_find(gateway: QRGateway, model: str, **keys: object) -> list[tuple[int, Dataset]]:
    """C-FIND with pynetdicom (to send identifiers findscu would not); return (status, status dataset)."""
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", gateway.port, ae_title="DICOMGW")
    assert assoc.is_established
    identifier = Dataset()
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    try:
        return [(int(rsp.Status), rsp) for rsp, _ in assoc.send_c_find(identifier, model)]
    finally:
        assoc.release()


STUDY_ROOT = str(StudyRootQueryRetrieveInformationModelFind)
PATIENT_ROOT = str(PatientRootQueryRetrieveInformationModelFind)


@pytest.mark.parametrize(
    ("model", "keys", "offending"),
    [
        (STUDY_ROOT, {"StudyInstanceUID": ""}, 0x00080052),  # no Query/Retrieve Level
        (STUDY_ROOT, {"QueryRetrieveLevel": "EVERYTHING"}, 0x00080052),
        (STUDY_ROOT, {"QueryRetrieveLevel": "PATIENT", "PatientID": ""}, 0x00080052),  # not in Study Root
        (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY", "StudyDate": "2024-13-45"}, 0x00080020),
        (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY", "StudyDate": "20241345"}, 0x00080020),
        (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.abc"}, 0x0020000D),
        (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY", "Modality": "CT"}, 0x00080060),  # a SERIES key
        (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY", "PatientName": ["A*", "B*"]}, 0x00100010),
        (STUDY_ROOT, {"QueryRetrieveLevel": "SERIES", "Modality": "CT"}, 0x0020000D),  # hierarchical
        (STUDY_ROOT, {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": "1.2.3"}, 0x0020000E),
        (PATIENT_ROOT, {"QueryRetrieveLevel": "STUDY", "StudyDate": "20240101-"}, 0x00100020),
        (PATIENT_ROOT, {"QueryRetrieveLevel": "PATIENT", "StudyDate": "20240101"}, 0x00080020),
        (
            PATIENT_ROOT,
            {"QueryRetrieveLevel": "IMAGE", "PatientID": "GW-0002", "PatientBirthDate": "1980-1990"},
            0x00100030,
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")  # pydicom warns as the test builds them
def test_malformed_identifiers_are_refused_with_a900(
    gateway: QRGateway, model: str, keys: dict[str, object], offending: int
) -> None:
    responses = c_find(gateway, model, **keys)
    assert len(responses) == 1, [hex(s) for s, _ in responses]
    code, rsp = responses[0]
    assert code == status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS
    assert rsp.OffendingElement == offending
    assert 0 < len(rsp.ErrorComment) <= 64


def test_unsupported_optional_key_is_returned_with_ff01(gateway: QRGateway) -> None:
    responses = c_find(gateway, STUDY_ROOT, QueryRetrieveLevel="STUDY", StudyDate="20240302", PatientComments="x*")
    assert [code for code, _ in responses] == [status.PENDING_OPTIONAL_KEYS_UNSUPPORTED, status.SUCCESS]


def test_relational_query_needs_negotiation(gateway: QRGateway) -> None:
    """Without the unique key of the study, a SERIES query is refused unless relational queries were agreed."""
    from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation

    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(STUDY_ROOT)
    negotiation = SOPClassExtendedNegotiation()
    negotiation.sop_class_uid = STUDY_ROOT
    negotiation.service_class_application_information = b"\x01"
    assoc = ae.associate("127.0.0.1", gateway.port, ae_title="DICOMGW", ext_neg=[negotiation])
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.Modality = "MR"
    identifier.SeriesInstanceUID = ""
    try:
        answers = [(int(rsp.Status), ds) for rsp, ds in assoc.send_c_find(identifier, STUDY_ROOT)]
    finally:
        assoc.release()
    expected = {ds.SeriesInstanceUID for ds in gateway.datasets() if ds.Modality == "MR"}
    assert {ds.SeriesInstanceUID for code, ds in answers if code == status.PENDING} == expected
    assert answers[-1][0] == status.SUCCESS
