"""Development TLS material: a CA, a server certificate and one client certificate per kiosk (CN = id).

For test benches and demos only; production certificates come from the organisation's own CA.
Private keys are written with owner-only permissions and must never be committed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from pathlib import Path

VALID_DAYS = 365


def _write(path: Path, data: bytes, private: bool) -> Path:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644), "wb") as f:
        f.write(data)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    usage: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_dev_certificates(out: Path, kiosk_ids: list[str], hosts: list[str]) -> list[Path]:
    """Write ca.pem, server.pem/server.key and kiosk-<id>.pem/.key into `out`; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expert-checkin development CA")])
    ca_cert = _issue("expert-checkin development CA", ca_key, ca_name, ca_key, ca=True, usage=[], sans=[])
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue(
        hosts[0], server_key, ca_name, ca_key, ca=False, usage=[ExtendedKeyUsageOID.SERVER_AUTH], sans=sans
    )
    pem = serialization.Encoding.PEM
    written = [
        _write(out / "ca.pem", ca_cert.public_bytes(pem), private=False),
        _write(out / "server.pem", server_cert.public_bytes(pem), private=False),
        _write(out / "server.key", _key_pem(server_key), private=True),
    ]
    for kiosk_id in kiosk_ids:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(kiosk_id, key, ca_name, ca_key, ca=False, usage=[ExtendedKeyUsageOID.CLIENT_AUTH], sans=[])
        written.append(_write(out / f"kiosk-{kiosk_id}.pem", cert.public_bytes(pem), private=False))
        written.append(_write(out / f"kiosk-{kiosk_id}.key", _key_pem(key), private=True))
    return written
