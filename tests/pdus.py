"""A-ASSOCIATE-RQ PDUs built with pynetdicom's encoder, for tests that speak to the SCP byte by byte."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pynetdicom import build_context
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)

DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
Proposal = tuple[int, str, Sequence[str]]  # context ID, abstract syntax, transfer syntaxes


def associate_rq(
    *contexts: Proposal,
    calling: str = "RAWSCU",
    called: str = "DICOMGW",
    maximum_length: int = 0,
    version_name: str | None = None,
    extra: Sequence[Any] = (),
    application_context: str = DICOM_APPLICATION_CONTEXT,
) -> bytes:
    """An A-ASSOCIATE-RQ proposing `contexts`, with the user-information items in `extra` added."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = application_context
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    proposed = []
    for context_id, abstract, syntaxes in contexts:
        context = build_context(abstract, list(syntaxes))
        context.context_id = context_id
        proposed.append(context)
    primitive.presentation_context_definition_list = proposed
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = maximum_length
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.10.1531.99.2"
    items: list[Any] = [maximum, implementation]
    if version_name is not None:
        version = ImplementationVersionNameNotification()
        version.implementation_version_name = version_name
        items.append(version)
    primitive.user_information = [*items, *extra]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())
