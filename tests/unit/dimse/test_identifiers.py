"""C-FIND / C-MOVE / C-GET identifiers to the neutral query (PS3.4 C.4.1 to C.4.3), and back."""

from __future__ import annotations

import pytest
from pydicom import Dataset

from gateway.dicom.attributes import QueryLevel
from gateway.dimse.identifiers import InvalidIdentifier, _charset, parse_find, parse_retrieve
from gateway.index.queries import Range, SingleValue, Universal, ValueList, Wildcard

# The tests build invalid values on purpose; pydicom warns as they are set.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")


def identifier(**keys: object) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_study_query_translates_each_matching_kind() -> None:
    request = parse_find(
        identifier(
            QueryRetrieveLevel="STUDY",
            SpecificCharacterSet="ISO_IR 100",
            PatientName="Mül*",
            StudyDate="20240101-20240331",
            StudyInstanceUID=["1.2.3", "1.2.4"],
            ModalitiesInStudy=["CT", "MR"],
            AccessionNumber="",
            PatientComments="VIP",
        ),
        patient_root=False,
    )
    assert request.level == "STUDY" and request.query.level is QueryLevel.STUDY
    matchers = {match.tag: match.matcher for match in request.query.matches}
    assert matchers == {
        "00100010": Wildcard("Mül*"),
        "00080020": Range("20240101", "20240331"),
        "0020000D": ValueList(("1.2.3", "1.2.4")),
        "00080061": ValueList(("CT", "MR")),
    }
    assert request.unmatched == ("PatientComments",)  # returned, not matched on: FF01
    assert request.charset == ("ISO_IR 100",)
    assert 0x00080050 in dict(request.requested) and 0x00080005 not in dict(request.requested)


def test_patient_level_exists_only_in_the_patient_root_model() -> None:
    request = parse_find(identifier(QueryRetrieveLevel="PATIENT", PatientID="GW-*"), patient_root=True)
    assert request.level == "PATIENT" and request.query.level is QueryLevel.STUDY
    with pytest.raises(InvalidIdentifier) as error:
        parse_find(identifier(QueryRetrieveLevel="PATIENT", PatientID="GW-*"), patient_root=False)
    assert error.value.tag == 0x00080052


@pytest.mark.parametrize(
    ("patient_root", "keys", "tag"),
    [
        (False, {"QueryRetrieveLevel": "SERIES"}, 0x0020000D),
        (False, {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": ["1.2", "1.3"]}, 0x0020000D),
        (False, {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": "1.2"}, 0x0020000E),
        (True, {"QueryRetrieveLevel": "STUDY", "PatientID": "GW*"}, 0x00100020),
        (True, {"QueryRetrieveLevel": "PATIENT", "Modality": "CT"}, 0x00080060),
        (False, {"QueryRetrieveLevel": "STUDY", "SOPInstanceUID": "1.2"}, 0x00080018),
        (False, {"QueryRetrieveLevel": "STUDY", "StudyTime": "25"}, 0x00080030),
        (False, {"QueryRetrieveLevel": "STUDY", "StudyDescription": ["A", "B"]}, 0x00081030),
    ],
    ids=[
        "series-without-study",
        "series-with-study-list",
        "image-without-series",
        "patient-root-study-with-wildcard-patient",
        "lower-level-key",
        "image-key-in-study-query",
        "bad-time",
        "multiple-values",
    ],
)
def test_refusals_name_the_offending_element(patient_root: bool, keys: dict[str, object], tag: int) -> None:
    with pytest.raises(InvalidIdentifier) as error:
        parse_find(identifier(**keys), patient_root=patient_root)
    assert error.value.tag == tag


def test_relational_queries_drop_the_unique_key_requirement() -> None:
    request = parse_find(identifier(QueryRetrieveLevel="IMAGE", Modality="MR"), patient_root=False, relational=True)
    assert [match.tag for match in request.query.matches] == ["00080060"]


def test_retrieve_keys() -> None:
    request = parse_retrieve(
        identifier(QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2", SeriesInstanceUID=["1.2.1", "1.2.2"]),
        patient_root=False,
    )
    assert {m.tag: m.matcher for m in request.matches} == {
        "0020000D": SingleValue("1.2"),
        "0020000E": ValueList(("1.2.1", "1.2.2")),
    }
    patient = parse_retrieve(identifier(QueryRetrieveLevel="PATIENT", PatientID="GW-0001"), patient_root=True)
    assert [m.matcher for m in patient.matches] == [SingleValue("GW-0001")]
    only_series = parse_retrieve(identifier(QueryRetrieveLevel="SERIES", SeriesInstanceUID="1.2.1"), patient_root=False)
    assert [m.tag for m in only_series.matches] == ["0020000E"]  # higher keys narrow when given, else are optional
    for bad in (
        identifier(QueryRetrieveLevel="STUDY"),
        identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID="*"),
        identifier(QueryRetrieveLevel="PATIENT", PatientID="GW*"),
        identifier(QueryRetrieveLevel="IMAGE", SOPInstanceUID="1.2.x"),
    ):
        with pytest.raises(InvalidIdentifier):
            parse_retrieve(bad, patient_root=True)
    assert not isinstance(only_series.matches[0].matcher, Universal)


@pytest.mark.parametrize(
    ("asked", "names", "expected"),
    [
        ((), ["Doe^Jane"], ()),
        ((), ["Müller^Jürgen"], ("ISO_IR 192",)),
        (("ISO_IR 100",), ["Müller^Jürgen"], ("ISO_IR 100",)),
        (("ISO_IR 100",), ["Yamada^Tarou=山田^太郎"], ("ISO_IR 192",)),
        (("", "ISO 2022 IR 87"), ["Yamada^Tarou=山田^太郎=やまだ^たろう"], ("", "ISO 2022 IR 87")),
        (("ISO_IR 192",), ["Müller^Jürgen"], ("ISO_IR 192",)),
        (("NO SUCH CHARSET",), ["Doe"], ("ISO_IR 192",)),
    ],
)
def test_response_character_set(asked: tuple[str, ...], names: list[str], expected: tuple[str, ...]) -> None:
    ds = Dataset()
    ds.PatientName = names[0]
    assert _charset(ds, asked) == expected
