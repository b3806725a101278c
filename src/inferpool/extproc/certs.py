"""The self-signed serving certificate the upstream EPP uses when no `--cert-path` is given."""

from __future__ import annotations

import datetime
from pathlib import Path


def self_signed(hostnames: list[str] | None = None, days: int = 365) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) for a fresh RSA-2048 self-signed certificate.

    Envoy's ext_proc cluster in the upstream config accepts any certificate, so the
    point is encryption on the wire, not identity; that matches upstream behaviour.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    names = hostnames or ["localhost"]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "inferpool")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def load(cert_path: Path) -> tuple[bytes, bytes]:
    """(key, cert) from a directory holding tls.key and tls.crt, as upstream's `--cert-path`."""
    return (cert_path / "tls.key").read_bytes(), (cert_path / "tls.crt").read_bytes()
