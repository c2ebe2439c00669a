"""Certificates for TLS tests, made in-process with `cryptography`: a CA, a second (wrong) CA, a server
certificate for 127.0.0.1, client certificates (valid, expired, signed by the wrong CA)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Pki:
    """File paths (PEM) of one test PKI."""

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    expired_server_cert: Path
    expired_server_key: Path
    client_cert: Path
    client_key: Path
    expired_client_cert: Path
    expired_client_key: Path
    foreign_client_cert: Path
    foreign_client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(cn: str, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, *, server: bool,
          expired: bool = False) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = ((NOW - dt.timedelta(days=10), NOW - dt.timedelta(days=1)) if expired
                  else (NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=2)))
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _write(directory: Path, name: str, key: ec.EllipticCurvePrivateKey | None,
           cert: x509.Certificate) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return cert_path, key_path


def make_pki(directory: Path) -> Pki:
    ca_key, ca = _ca("yonglink test CA")
    other_key, other = _ca("some other CA")
    paths: dict[str, Path] = {}
    paths["ca"], _ = _write(directory, "ca", None, ca)
    paths["other_ca"], _ = _write(directory, "other-ca", None, other)
    for name, (key, cert) in {
        "server": _leaf("server", ca_key, ca, server=True),
        "expired_server": _leaf("server", ca_key, ca, server=True, expired=True),
        "client": _leaf("his-client", ca_key, ca, server=False),
        "expired_client": _leaf("his-client", ca_key, ca, server=False, expired=True),
        "foreign_client": _leaf("his-client", other_key, other, server=False),
    }.items():
        paths[f"{name}_cert"], paths[f"{name}_key"] = _write(directory, name.replace("_", "-"), key, cert)
    return Pki(**paths)
