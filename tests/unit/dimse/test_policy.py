"""Association policy (PS3.8 A-ASSOCIATE-RJ reasons) and per-operation permissions, with a stub registry."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.admin.ae_titles import RemoteAETitle
from gateway.config import load_settings
from gateway.dimse.ae import (
    REASON_CALLED_AE_NOT_RECOGNIZED,
    REASON_CALLING_AE_NOT_RECOGNIZED,
    AssociationPolicy,
)


class StubRegistry:
    def __init__(self, *entries: RemoteAETitle) -> None:
        self.entries = {entry.ae_title: entry for entry in entries}

    def find(self, ae_title: str) -> RemoteAETitle | None:
        return self.entries.get(ae_title)


CT = RemoteAETitle("CT01", "127.0.0.1", 104, operations=frozenset({"store"}))
OFF = RemoteAETitle("OFF", "127.0.0.1", 104, enabled=False)
FAR = RemoteAETitle("FAR", "192.0.2.10", 104)


def policy(**settings: Any) -> AssociationPolicy:
    return AssociationPolicy(load_settings(ae_aliases=["GW2"], **settings), StubRegistry(CT, OFF, FAR))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["open", "registered"])
def test_called_ae_title_must_be_ours_or_an_alias(mode: str) -> None:
    checker = policy(association_policy=mode)
    assert checker.admit("CT01", "DICOMGW", "127.0.0.1") == (CT, None)
    assert checker.admit("CT01", "GW2", "127.0.0.1") == (CT, None)
    entry, rejection = checker.admit("CT01", "OTHER", "127.0.0.1")
    assert rejection is not None and rejection.diagnostic == REASON_CALLED_AE_NOT_RECOGNIZED


def test_open_policy_accepts_strangers_but_holds_registered_aes_to_their_permissions() -> None:
    checker = policy()
    assert checker.admit("STRANGER", "DICOMGW", "10.1.1.1") == (None, None)
    assert checker.permits(None, "find") and checker.permits(None, "store")
    assert checker.permits(CT, "store") and not checker.permits(CT, "find")
    assert checker.admit("FAR", "DICOMGW", "127.0.0.1") == (FAR, None)  # hosts are checked only when asked


def test_registered_policy_rejects_unknown_and_disabled_callers() -> None:
    checker = policy(association_policy="registered")
    _, unknown = checker.admit("STRANGER", "DICOMGW", "127.0.0.1")
    assert unknown is not None and unknown.diagnostic == REASON_CALLING_AE_NOT_RECOGNIZED
    assert unknown.reason == "calling AE title not recognized"
    _, disabled = checker.admit("OFF", "DICOMGW", "127.0.0.1")
    assert disabled is not None and disabled.diagnostic == REASON_CALLING_AE_NOT_RECOGNIZED
    assert not checker.permits(None, "store")


def test_host_check() -> None:
    checker = policy(association_policy="registered", association_check_host=True)
    assert checker.admit("CT01", "DICOMGW", "127.0.0.1") == (CT, None)
    _, wrong = checker.admit("CT01", "DICOMGW", "10.9.9.9")
    assert wrong is not None and "registered host 127.0.0.1" in wrong.reason
    _, far = checker.admit("FAR", "DICOMGW", "127.0.0.1")
    assert far is not None
