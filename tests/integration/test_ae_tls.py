"""DICOM TLS (PS3.15 B.1) with a CA made in the test: the TLS SCP, client certificates, and our TLS SCU."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from gateway.admin.ae_titles import RemoteAETitle
from gateway.dimse.scu import echo
from gateway.dimse.server import start_scp
from gateway.dimse.tls import client_context
from gateway.services import Services
from tests.fixtures.gateway import gateway_services, make_settings
from tests.fixtures.qr import QRGateway, dcmtk, qr_gateway, storescp
from tests.part10 import dataset_bytes

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("echoscu") is None, reason="DCMTK is not installed"),
]


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, the gateway's certificate (localhost, 127.0.0.1), a client's, and a stranger's."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("Test CA", ca_key, "Test CA", ca_key, ca=True)
    files: dict[str, Path] = {"ca": directory / "ca.pem"}
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for role, issuer in (("server", "ca"), ("client", "ca"), ("rogue", "self")):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            _certificate(f"{role}.test", key, "Test CA", ca_key, ca=False)
            if issuer == "ca"
            else _certificate("rogue.test", key, "rogue.test", key, ca=False)
        )
        files[f"{role}_key"] = _write_key(key, directory / f"{role}.key")
        files[f"{role}_cert"] = directory / f"{role}.pem"
        files[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Pki(**files)


@dataclass
class TlsGateway:
    services: Services
    port: int


@pytest.fixture(params=[True, False], ids=["verify-client", "no-client-verification"])
def tls_gateway(request: pytest.FixtureRequest, pki: Pki, tmp_path: Path, broker_url: str) -> Iterator[TlsGateway]:
    settings = make_settings(
        tmp_path / "data",
        broker_url=broker_url,
        tls_port=2762,
        tls_certificate=pki.server_cert,
        tls_private_key=pki.server_key,
        tls_ca_certificates=pki.ca,
        tls_verify_client=request.param,
    )
    with gateway_services(settings) as services:
        server = start_scp(services, host="127.0.0.1", port=0, tls=True)
        try:
            yield TlsGateway(services, int(server.server_address[1]))
        finally:
            server.shutdown()


def echoscu(port: int, *tls: str) -> subprocess.CompletedProcess[str]:
    return dcmtk("echoscu", "-aec", "DICOMGW", *tls, "127.0.0.1", str(port), timeout=30)


def test_echoscu_with_a_client_certificate_from_the_ca(tls_gateway: TlsGateway, pki: Pki) -> None:
    result = echoscu(tls_gateway.port, "+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca))
    assert result.returncode == 0, result.stderr


def test_client_without_a_trusted_certificate(tls_gateway: TlsGateway, pki: Pki) -> None:
    rogue = echoscu(tls_gateway.port, "+tls", str(pki.rogue_key), str(pki.rogue_cert), "+cf", str(pki.ca))
    anonymous = echoscu(tls_gateway.port, "+tla", "+cf", str(pki.ca))
    plain = echoscu(tls_gateway.port)
    assert plain.returncode != 0  # no TLS at all on the TLS port
    if tls_gateway.services.settings.tls_verify_client:
        assert rogue.returncode != 0 and anonymous.returncode != 0, (rogue.stderr, anonymous.stderr)
    else:
        assert rogue.returncode == 0 and anonymous.returncode == 0, (rogue.stderr, anonymous.stderr)


def test_pynetdicom_scu_with_an_ssl_context(tls_gateway: TlsGateway, pki: Pki) -> None:
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(Verification)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(pki.client_cert, pki.client_key)
    assoc = ae.associate("127.0.0.1", tls_gateway.port, ae_title="DICOMGW", tls_args=(context, "localhost"))
    assert assoc.is_established
    assert int(assoc.send_c_echo().Status) == 0
    assoc.release()
    bare = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))  # no client certificate
    assoc = ae.associate("127.0.0.1", tls_gateway.port, ae_title="DICOMGW", tls_args=(bare, "localhost"))
    if tls_gateway.services.settings.tls_verify_client:
        assert not assoc.is_established
    else:
        assert assoc.is_established
        assoc.release()


@pytest.fixture
def gateway_with_tls_client(pki: Pki, tmp_path: Path, broker_url: str) -> Iterator[QRGateway]:
    with qr_gateway(
        tmp_path,
        broker_url,
        tls_port=2762,
        tls_certificate=pki.server_cert,
        tls_private_key=pki.server_key,
        tls_ca_certificates=pki.ca,
    ) as gateway:
        yield gateway


def test_c_move_and_echo_to_a_tls_destination(gateway_with_tls_client: QRGateway, pki: Pki, tmp_path: Path) -> None:
    """Our SCU side: storescp with TLS (requiring our certificate) as a registered TLS destination."""
    gateway = gateway_with_tls_client
    received = tmp_path / "received"
    tls = ["+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca), "+xa", "+B"]
    with storescp(received, "TLSDEST", *tls) as port:
        entry = gateway.register("TLSDEST", port, operations=["destination"], tls=True, host="localhost")
        result = echo("DICOMGW", entry, 10, lambda: client_context(gateway.services.settings))
        assert result.ok, result.detail
        plain = echo("DICOMGW", RemoteAETitle("TLSDEST", "localhost", port), 5)
        assert not plain.ok
        members = [ds for path, ds in zip(gateway.corpus, gateway.datasets(), strict=True) if path.parent.name == "mr"]
        args = ["movescu", "-v", "-S", "-aet", "MOVESCU", "-aec", "DICOMGW", "-aem", "TLSDEST", "127.0.0.1"]
        args += [
            str(gateway.port),
            "-k",
            "QueryRetrieveLevel=SERIES",
            "-k",
            f"StudyInstanceUID={members[0].StudyInstanceUID}",
        ]
        args += ["-k", f"SeriesInstanceUID={members[0].SeriesInstanceUID}"]
        moved = dcmtk(*args)
    assert "Received Final Move Response (Success)" in moved.stderr, moved.stderr
    files = {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in received.iterdir()}
    assert sorted(files) == sorted(ds.SOPInstanceUID for ds in members)
    for ds in members:
        assert dataset_bytes(files[ds.SOPInstanceUID].read_bytes()) == dataset_bytes(gateway.stored(ds))
