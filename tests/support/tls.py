"""Certificates made at test time for a TLS redis-server: a CA, a server certificate for
127.0.0.1, a client certificate, and a second CA that signed none of them."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conveyor.tools.embedded import RedisServer, free_port

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: the CA, the server's and the client's certificate and key."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(
    subject: str, key: Key, issuer: str, issuer_key: Key, *, ca: bool = False
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
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: Key | None = None) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        key_bytes = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.with_suffix(".key").write_bytes(key_bytes)
    return path


def make_certificates(directory: Path) -> TlsFiles:
    """A CA and the certificates it signs, plus an unrelated CA, as PEM files in `directory`."""
    ca_key, other_key, server_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()) for _ in range(4)
    )
    ca = _certificate("Test CA", ca_key, "Test CA", ca_key, ca=True)
    other = _certificate("Other CA", other_key, "Other CA", other_key, ca=True)
    server = _certificate("127.0.0.1", server_key, "Test CA", ca_key)
    client = _certificate("conveyor", client_key, "Test CA", ca_key)
    server_cert = _write(directory / "server.crt", server, server_key)
    client_cert = _write(directory / "client.crt", client, client_key)
    return TlsFiles(
        ca=_write(directory / "ca.crt", ca),
        server_cert=server_cert,
        server_key=server_cert.with_suffix(".key"),
        client_cert=client_cert,
        client_key=client_cert.with_suffix(".key"),
        other_ca=_write(directory / "other-ca.crt", other),
    )


def tls_server(binary: str, files: TlsFiles) -> tuple[RedisServer, int]:
    """A redis-server that also listens for TLS (client certificates required) on the
    port returned; its plain port stays for the readiness check."""
    port = free_port()
    server = RedisServer(
        binary,
        extra_args=(
            "--tls-port", str(port),
            "--tls-cert-file", str(files.server_cert),
            "--tls-key-file", str(files.server_key),
            "--tls-ca-cert-file", str(files.ca),
            "--tls-auth-clients", "yes",
        ),
    )  # fmt: skip
    return server, port
