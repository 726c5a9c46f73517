"""The committed Annex L table against pydicom's CID 4031 (generated from the standard by pydicom)."""

from __future__ import annotations

from pydicom.sr._cid_dict import cid_concepts
from pydicom.sr._concepts_dict import concepts

from gateway.fhir.bodysite import BODY_PARTS, body_site


def test_every_row_matches_cid_4031_as_pydicom_ships_it() -> None:
    common_anatomic_regions = set(cid_concepts[4031]["SCT"])
    for term, (keyword, code, meaning) in BODY_PARTS.items():
        assert keyword in common_anatomic_regions, term
        assert concepts["SCT"][keyword] == {code: (meaning, concepts["SCT"][keyword][code][1])}, term
        assert len(term) <= 16 and term == term.upper()  # a CS value (PS3.5 6.2)


def test_lookup() -> None:
    assert body_site("CHEST") == ("816094009", "Chest")
    assert body_site(" chest ") == ("816094009", "Chest")
    assert body_site("SSPINE") == ("54735007", "Sacrum")
    assert body_site("LEFTTHING") is None and body_site(None) is None
