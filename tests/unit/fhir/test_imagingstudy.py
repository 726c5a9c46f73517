"""ImagingStudy mapping against the corpus: expected values computed from the DICOM files with pydicom."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydicom import Dataset, dcmread
from pydicom.valuerep import PersonName
from sqlalchemy import Engine

from gateway.fhir.imagingstudy import MappingOptions, imaging_study, withdrawn
from gateway.fhir.patient import patient_resource
from gateway.fhir.source import load_study
from gateway.fhir.versions import FhirVersion, model_class
from gateway.index.db import make_engine, make_session_factory, migrate
from testdata.generate import uid
from tests.factories import make_dataset, new_uid, write_part10
from tests.fixtures.fhir_server import SchemaValidator
from tests.unit.fhir.conftest import index_files

DCM = "http://dicom.nema.org/resources/ontology/DCM"
SCT = "http://snomed.info/sct"
# PS3.16 Annex L / CID 4031 (codes after CP 1962), written out here independently of gateway/fhir/bodysite.py.
ANNEX_L = {"CHEST": ("816094009", "Chest"), "HEAD": ("69536005", "Head"), "ABDOMEN": ("818981001", "Abdomen")}
OPTIONS = MappingOptions("http://gateway.test/dicomweb")


def studies(files: list[Path]) -> dict[str, list[Dataset]]:
    """The corpus read with pydicom, grouped by Study Instance UID."""
    grouped: dict[str, list[Dataset]] = defaultdict(list)
    for path in files:
        ds = dcmread(path, stop_before_pixels=True)
        grouped[str(ds.StudyInstanceUID)].append(ds)
    return grouped


def mapped(engine: Engine, study: str, options: MappingOptions = OPTIONS) -> dict[str, Any]:
    snapshot = load_study(make_session_factory(engine), study)
    assert snapshot is not None
    return imaging_study(snapshot, options)


def western(name: PersonName) -> str:
    parts = [name.name_prefix, name.given_name, name.middle_name, name.family_name]
    return " ".join(p for p in parts if p)


def by_uid(resource: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {series["uid"]: series for series in resource["series"]}


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_every_corpus_study_maps_validates_and_counts_right(
    corpus_engine: Engine, corpus_files: list[Path], version: FhirVersion
) -> None:
    options = MappingOptions(OPTIONS.dicomweb_url, version)
    for study, datasets in studies(corpus_files).items():
        resource = mapped(corpus_engine, study, options)
        model_class(version, "ImagingStudy").model_validate(resource)
        assert resource["id"] == study
        assert resource["identifier"][0] == {"use": "official", "system": "urn:dicom:uid", "value": f"urn:oid:{study}"}
        assert resource["numberOfSeries"] == len({ds.SeriesInstanceUID for ds in datasets})
        assert resource["numberOfInstances"] == len(datasets)
        series = by_uid(resource)
        for ds in datasets:
            one = series[ds.SeriesInstanceUID]
            instance = next(i for i in one["instance"] if i["uid"] == ds.SOPInstanceUID)
            assert instance["sopClass"]["system"] == "urn:ietf:rfc:3986"
            assert instance["sopClass"]["code"] == f"urn:oid:{ds.SOPClassUID}"
            assert one["numberOfInstances"] == sum(1 for d in datasets if d.SeriesInstanceUID == ds.SeriesInstanceUID)
            codes = one["modality"].get("coding", [one["modality"]])
            assert codes[0] == {"system": DCM, "code": ds.Modality}
        snapshot = load_study(make_session_factory(corpus_engine), study)
        assert snapshot is not None
        patient = patient_resource(snapshot.patient, snapshot.attributes, version)
        assert (patient is None) == (not datasets[0].get("PatientID"))
        if patient is not None:
            model_class(version, "Patient").model_validate(patient)
            assert patient["identifier"][0]["value"] == datasets[0].PatientID


def test_ct_study_with_three_series_in_latin1(corpus_engine: Engine, corpus_files: list[Path]) -> None:
    datasets = studies(corpus_files)[uid("ct-study")]
    first = datasets[0]
    resource = mapped(corpus_engine, uid("ct-study"))
    acsn = next(i for i in resource["identifier"] if i.get("type", {}).get("coding", [{}])[0].get("code") == "ACSN")
    assert acsn["value"] == first.AccessionNumber
    assert acsn["type"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0203"
    assert {"use": "secondary", "type": {"text": "Study ID"}, "value": first.StudyID} in resource["identifier"]
    assert resource["status"] == "available"
    assert resource["description"] == first.StudyDescription
    assert resource["subject"]["identifier"] == {"value": first.PatientID}
    assert resource["subject"]["display"] == western(first.PatientName) == "Jürgen Müller"
    assert resource["referrer"]["display"] == western(first.ReferringPhysicianName) == "Hans Schäfer"
    # No TimezoneOffsetFromUTC and no configured zone: a date (FHIR dateTime needs a zone with a time).
    da = first.StudyDate
    assert resource["started"] == f"{da[:4]}-{da[4:6]}-{da[6:]}"
    assert resource["modality"] == [{"system": DCM, "code": "CT"}]
    numbers = sorted({int(ds.SeriesNumber) for ds in datasets})
    assert [s["number"] for s in resource["series"]] == numbers
    for ds in datasets:
        series = by_uid(resource)[ds.SeriesInstanceUID]
        assert series["description"] == ds.SeriesDescription
        code, display = ANNEX_L[ds.BodyPartExamined]
        assert series["bodySite"] == {"system": SCT, "code": code, "display": display}
        instance = next(i for i in series["instance"] if i["uid"] == ds.SOPInstanceUID)
        assert instance["number"] == int(ds.InstanceNumber)
        assert instance["sopClass"]["display"] == "CT Image Storage"
    assert resource["contained"][0]["address"] == OPTIONS.dicomweb_url
    assert resource["endpoint"] == [{"reference": "#dicomweb", "type": "Endpoint"}]


def test_configured_zone_gives_started_a_time(corpus_engine: Engine, corpus_files: list[Path]) -> None:
    first = studies(corpus_files)[uid("ct-study")][0]
    resource = mapped(
        corpus_engine, uid("ct-study"), MappingOptions(OPTIONS.dicomweb_url, zone=ZoneInfo("Europe/Berlin"))
    )
    tm = first.StudyTime
    assert resource["started"] == f"2024-01-15T{tm[:2]}:{tm[2:4]}:{tm[4:6]}+01:00"  # CET in January


def test_study_with_several_modalities_and_japanese_names(corpus_engine: Engine, corpus_files: list[Path]) -> None:
    datasets = studies(corpus_files)[uid("us-study")]
    resource = mapped(corpus_engine, uid("us-study"))
    assert resource["modality"] == [{"system": DCM, "code": m} for m in sorted({ds.Modality for ds in datasets})]
    assert [s["modality"]["code"] for s in resource["series"]] == [
        ds.Modality for ds in sorted(datasets, key=lambda d: int(d.SeriesNumber))
    ]
    name = datasets[0].PatientName  # ISO 2022 IR 87, decoded by pydicom
    family, given = name.ideographic.split("^")[:2]
    assert resource["subject"]["display"] == f"{western(name)} ({family} {given})" == "Tarou Yamada (山田 太郎)"
    snapshot = load_study(make_session_factory(corpus_engine), uid("us-study"))
    assert snapshot is not None
    patient = patient_resource(snapshot.patient, snapshot.attributes, "R4")
    assert patient is not None
    names = patient["name"]
    assert names[0]["family"] == name.family_name and names[0]["given"] == [name.given_name]
    ideographic = names[1]
    assert ideographic["family"] == family and ideographic["given"] == [given]
    assert ideographic["extension"][0]["valueCode"] == "IDE"
    assert names[2]["family"] == name.phonetic.split("^")[0]
    assert patient["gender"] == "male" and patient["birthDate"] == "1970-01-01"


def test_multiframe_instance_is_one_instance(corpus_engine: Engine, corpus_files: list[Path]) -> None:
    cine = next(ds for ds in studies(corpus_files)[uid("us-study")] if int(ds.get("NumberOfFrames", 1)) > 1)
    series = by_uid(mapped(corpus_engine, uid("us-study")))[cine.SeriesInstanceUID]
    assert series["numberOfInstances"] == 1
    assert [i["uid"] for i in series["instance"]] == [cine.SOPInstanceUID]
    assert series["instance"][0]["sopClass"] == {
        "system": "urn:ietf:rfc:3986",
        "code": f"urn:oid:{cine.SOPClassUID}",
        "display": "Ultrasound Multi-frame Image Storage",
    }


def test_sparse_study_leaves_out_what_it_does_not_have(corpus_engine: Engine, corpus_files: list[Path]) -> None:
    ds = studies(corpus_files)[uid("sparse-study")][0]
    assert "AccessionNumber" not in ds and "StudyTime" not in ds and not ds.PatientName
    for version in ("R4", "R5"):
        resource = mapped(corpus_engine, uid("sparse-study"), MappingOptions(OPTIONS.dicomweb_url, version))
        assert [i["system"] for i in resource["identifier"]] == ["urn:dicom:uid"]
        for absent in ("started", "referrer", "description", "procedureCode"):
            assert absent not in resource
        # ImagingStudy.subject is required: with neither ID nor name, a data-absent-reason extension.
        assert resource["subject"]["extension"][0]["valueCode"] == "unknown"
        assert "number" not in resource["series"][0]


def rich_dataset(study: str, **attrs: Any) -> Dataset:
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = "RIS"
    issuer.UniversalEntityID = "1.2.3.4.5"
    issuer.UniversalEntityIDType = "ISO"
    procedure = Dataset()
    procedure.CodeValue = "RPID17"
    procedure.CodingSchemeDesignator = "RADLEX"
    procedure.CodeMeaning = "CT Chest"
    qualifiers = Dataset()
    qualifiers.UniversalEntityID = "2.16.840.1.113883.3.1"
    qualifiers.UniversalEntityIDType = "ISO"
    values: dict[str, Any] = {
        "TimezoneOffsetFromUTC": "-0500",
        "StudyTime": "083000.25",
        "IssuerOfPatientID": "HOSP",
        "IssuerOfPatientIDQualifiersSequence": [qualifiers],
        "IssuerOfAccessionNumberSequence": [issuer],
        "ProcedureCodeSequence": [procedure],
        "Laterality": "L",
        "StationName": "CT01",
        "InstitutionName": "General Hospital",
        "BodyPartExamined": "LEFTTHING",
        "SeriesDate": "20240115",
        "SeriesTime": "0831",
        **attrs,
    }
    return make_dataset(study_uid=study, **values)


def test_optional_attributes_when_present(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'index.sqlite'}")
    migrate(engine)
    study = new_uid()
    ds = rich_dataset(study)
    index_files(engine, [write_part10(ds, tmp_path / "rich.dcm")])
    r4 = mapped(engine, study)
    assert r4["started"] == "2024-01-15T08:30:00.25-05:00"
    acsn = r4["identifier"][1]
    assert acsn["system"] == "urn:oid:1.2.3.4.5" and acsn["assigner"] == {"display": "RIS"}
    assert r4["subject"]["identifier"] == {
        "system": "urn:oid:2.16.840.1.113883.3.1",
        "value": ds.PatientID,
        "assigner": {"display": "HOSP"},
    }
    assert r4["procedureCode"] == [
        {"coding": [{"system": "http://radlex.org", "code": "RPID17", "display": "CT Chest"}], "text": "CT Chest"}
    ]
    series = r4["series"][0]
    assert series["bodySite"] == {"display": "LEFTTHING"}  # no Annex L row: text, never a guessed code
    assert series["laterality"] == {"system": SCT, "code": "7771000", "display": "Left"}
    assert series["started"] == "2024-01-15T08:31:00-05:00"
    assert series["performer"] == [
        {"actor": {"type": "Device", "display": "CT01"}},
        {"actor": {"type": "Organization", "display": "General Hospital"}},
    ]
    r5 = mapped(engine, study, MappingOptions(OPTIONS.dicomweb_url, "R5"))
    assert r5["procedure"] == [{"concept": r4["procedureCode"][0]}]
    assert r5["series"][0]["bodySite"] == {"concept": {"text": "LEFTTHING"}}
    assert r5["series"][0]["laterality"] == {"coding": [series["laterality"]], "text": "Left"}
    assert r5["modality"] == [{"coding": [{"system": DCM, "code": "CT"}]}]
    assert r5["contained"][0]["connectionType"][0]["coding"][0]["code"] == "dicom-wado-rs"


def test_withdrawn_study_keeps_its_content(corpus_engine: Engine) -> None:
    resource = mapped(corpus_engine, uid("mr-study"))
    marked = withdrawn({**resource, "meta": {"versionId": "1"}}, "R4")
    assert marked["status"] == "entered-in-error" and "meta" not in marked
    assert marked["series"] == resource["series"]


def test_r4_resources_pass_the_official_json_schema(
    corpus_engine: Engine, corpus_files: list[Path], schema_validator: SchemaValidator, tmp_path: Path
) -> None:
    resources = [mapped(corpus_engine, study) for study in studies(corpus_files)]
    for study in studies(corpus_files):
        snapshot = load_study(make_session_factory(corpus_engine), study)
        assert snapshot is not None
        patient = patient_resource(snapshot.patient, snapshot.attributes, "R4")
        resources += [patient] if patient else []
    engine = make_engine(f"sqlite:///{tmp_path / 'index.sqlite'}")
    migrate(engine)
    study = new_uid()
    index_files(engine, [write_part10(rich_dataset(study), tmp_path / "rich.dcm")])
    resources.append(mapped(engine, study))
    for resource in resources:
        assert schema_validator.errors(resource) == [], resource["id"]
    # The schema checks codes fhir.resources lets through, e.g. a status outside ImagingStudyStatus.
    assert schema_validator.errors({**resources[0], "status": "bogus"}) != []
