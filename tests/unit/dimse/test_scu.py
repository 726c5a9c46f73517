"""Retrieve sub-operations: which contexts to propose, and what to send over those a peer accepted."""

from __future__ import annotations

import io

import numpy as np
from pydicom import dcmread
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)
from pynetdicom import build_context
from pynetdicom.presentation import PresentationContext

from gateway.dimse.scu import outgoing_dataset, proposed_contexts
from gateway.index.retrieve import StoredInstance
from tests.factories import make_dataset, to_part10_bytes
from tests.fakes import MemoryStore


def stored(store: MemoryStore, transfer_syntax: str = str(ExplicitVRLittleEndian)) -> StoredInstance:
    """Put an instance in `store` in `transfer_syntax` and return what the index would say of it."""
    ds = make_dataset(rows=4, columns=4)
    if transfer_syntax == RLELossless:
        ds.compress(RLELossless, generate_instance_uid=False)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
    else:
        data = to_part10_bytes(ds, transfer_syntax)
    key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
    store.put(key, data)
    return StoredInstance(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, str(CTImageStorage), transfer_syntax, key,
        len(data), None, None,
    )  # fmt: skip


def accepted(*syntaxes: str) -> list[PresentationContext]:
    contexts = []
    for number, syntax in enumerate(syntaxes):
        context = build_context(CTImageStorage, [syntax])
        context.context_id = 2 * number + 1
        context._as_scu = True
        context.result = 0x00
        contexts.append(context)
    return contexts


def test_proposed_contexts_offer_each_stored_syntax_and_native_little_endian() -> None:
    store = MemoryStore()
    items = [stored(store), stored(store, str(RLELossless)), stored(store, str(ImplicitVRLittleEndian))]
    contexts = proposed_contexts(items)
    offered = [(str(cx.abstract_syntax), [str(ts) for ts in cx.transfer_syntax]) for cx in contexts]
    assert offered == [
        (CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]),
        (CTImageStorage, [ExplicitVRLittleEndian]),
        (CTImageStorage, [RLELossless]),
        (CTImageStorage, [ImplicitVRLittleEndian]),
    ]


def test_sent_as_stored_when_accepted() -> None:
    store = MemoryStore()
    item = stored(store, str(ExplicitVRBigEndian))
    ds = outgoing_dataset(store, item, accepted(ExplicitVRBigEndian, ExplicitVRLittleEndian))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian


def test_transcoded_to_little_endian_when_not_accepted_but_decodable() -> None:
    store = MemoryStore()
    item = stored(store, str(RLELossless))
    ds = outgoing_dataset(store, item, accepted(ImplicitVRLittleEndian))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian  # pynetdicom re-encodes it implicit
    source = dcmread(io.BytesIO(store.read(item.object_key)))
    assert np.array_equal(ds.pixel_array, source.pixel_array)


def test_failed_sub_operation_when_nothing_fits_or_the_object_is_gone() -> None:
    store = MemoryStore()
    item = stored(store, str(RLELossless))
    unsendable = outgoing_dataset(store, item, accepted(ExplicitVRBigEndian))
    # No file meta, so no transfer syntax: pynetdicom fails the sub-operation and lists the UID.
    assert unsendable.SOPInstanceUID == item.sop_instance_uid and not hasattr(unsendable, "file_meta")
    store.delete(item.object_key)
    gone = outgoing_dataset(store, item, accepted(RLELossless))
    assert gone.SOPInstanceUID == item.sop_instance_uid and not hasattr(gone, "file_meta")
