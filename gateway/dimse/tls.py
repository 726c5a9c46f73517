"""DICOM TLS (PS3.15 B.1 Basic TLS Secure Transport Connection Profile, with the BCP 195 settings).

One place builds the SSL contexts of the TLS SCP and of our SCU (C-MOVE destinations, `ae echo`).
"""

from __future__ import annotations

import ssl

from gateway.config import Settings
from gateway.errors import ConfigError

# BCP 195 (RFC 9325 4.2): TLS 1.2 or newer, forward-secret AEAD cipher suites only (TLS 1.3 suites are
# all acceptable and not affected by this list). The same choice as DCMTK's "Non-downgrading BCP 195" profile.
BCP195_CIPHERS = "ECDHE+AESGCM:DHE+AESGCM:ECDHE+CHACHA20:DHE+CHACHA20"


def _harden(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def server_context(settings: Settings) -> ssl.SSLContext:
    """The TLS SCP's context: our certificate, and the client's verified against the CA when configured.

    Raises ConfigError naming the setting when a certificate, key or CA file cannot be loaded.
    """
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    if settings.tls_certificate is None or settings.tls_private_key is None:
        raise ConfigError("invalid setting GATEWAY_TLS_CERTIFICATE: DICOM TLS needs a certificate and private key")
    try:
        context.load_cert_chain(settings.tls_certificate, settings.tls_private_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"invalid setting GATEWAY_TLS_CERTIFICATE / GATEWAY_TLS_PRIVATE_KEY: {exc}") from None
    if settings.tls_ca_certificates is not None:
        try:
            context.load_verify_locations(cafile=settings.tls_ca_certificates)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"invalid setting GATEWAY_TLS_CA_CERTIFICATES: {exc}") from None
    # PS3.15 B.1: peers authenticate each other with certificates; verification of the client is optional here.
    context.verify_mode = ssl.CERT_REQUIRED if settings.tls_verify_client else ssl.CERT_NONE
    return context


def client_context(settings: Settings) -> ssl.SSLContext:
    """Our SCU's context: the peer verified against the configured CAs (else the system's), our certificate shown.

    Raises ConfigError when a certificate, key or CA file cannot be loaded.
    """
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))  # verifies the peer and its host name
    try:
        if settings.tls_ca_certificates is not None:
            context.load_verify_locations(cafile=settings.tls_ca_certificates)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"invalid setting GATEWAY_TLS_CA_CERTIFICATES: {exc}") from None
    if settings.tls_certificate is not None and settings.tls_private_key is not None:
        try:
            context.load_cert_chain(settings.tls_certificate, settings.tls_private_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"invalid setting GATEWAY_TLS_CERTIFICATE / GATEWAY_TLS_PRIVATE_KEY: {exc}") from None
    return context
