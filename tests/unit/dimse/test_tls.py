"""TLS settings: what is required together, and one-line errors for files that cannot be loaded."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.dimse.tls import client_context, server_context
from gateway.errors import ConfigError


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"tls_port": 2762}, "GATEWAY_TLS_PRIVATE_KEY"),
        ({"tls_port": 2762, "tls_private_key": "k.pem"}, "GATEWAY_TLS_PRIVATE_KEY"),
        ({"tls_verify_client": True}, "GATEWAY_TLS_VERIFY_CLIENT"),
        ({"tls_port": 11112, "tls_certificate": "c", "tls_private_key": "k"}, "GATEWAY_TLS_PORT"),
    ],
)
def test_incomplete_tls_settings_are_refused(overrides: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        load_settings(**overrides)


def test_missing_files_are_reported_by_setting(tmp_path: Path) -> None:
    settings = load_settings(
        tls_port=2762, tls_certificate=tmp_path / "missing.pem", tls_private_key=tmp_path / "missing.key"
    )
    with pytest.raises(ConfigError, match="GATEWAY_TLS_CERTIFICATE"):
        server_context(settings)
    with pytest.raises(ConfigError, match="GATEWAY_TLS_CA_CERTIFICATES"):
        client_context(load_settings(tls_ca_certificates=tmp_path / "missing-ca.pem"))


def test_client_context_follows_bcp_195() -> None:
    context = client_context(load_settings())
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert all("GCM" in c["name"] or "CHACHA20" in c["name"] for c in context.get_ciphers())
