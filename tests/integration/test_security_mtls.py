"""mTLS on the EPP's ext_proc port: a client certificate signed by --client-ca is required."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inferpool.extproc.server import GrpcConfig, GrpcServers

from .conftest import free_port


def issue(
    name: str, issuer: tuple[Any, x509.Name] | None = None, ca: bool = False
) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key, issuer_name = issuer if issuer else (key, subject)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    return key, builder.sign(signer_key, hashes.SHA256())


def pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


async def can_call(port: int, credentials: grpc.ChannelCredentials) -> bool:
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", "localhost")]
    ) as channel:
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.aio.AioRpcError as err:
            return err.code() != grpc.StatusCode.UNAVAILABLE
    return True


@pytest.mark.parametrize("with_client_cert", [True, False])
async def test_ext_proc_port_requires_client_cert(tmp_path: Path, with_client_cert: bool) -> None:
    ca_key, ca = issue("inferpool-test-ca", ca=True)
    server_key, server = issue("localhost", (ca_key, ca.subject))
    client_key, client = issue("envoy", (ca_key, ca.subject))
    (tmp_path / "tls.key").write_bytes(pem(server_key))
    (tmp_path / "tls.crt").write_bytes(cert_pem(server))
    (tmp_path / "ca.crt").write_bytes(cert_pem(ca))
    config = GrpcConfig(
        host="127.0.0.1",
        port=free_port(),
        health_port=free_port(),
        cert_path=tmp_path,
        client_ca=tmp_path / "ca.crt",
    )
    servers = GrpcServers(None, lambda: None, config)  # type: ignore[arg-type]  # no request reaches the router
    await servers.start()
    try:
        if with_client_cert:
            creds = grpc.ssl_channel_credentials(cert_pem(ca), pem(client_key), cert_pem(client))
        else:
            creds = grpc.ssl_channel_credentials(cert_pem(ca))
        # The ext_proc server has no health service: a completed TLS handshake answers UNIMPLEMENTED,
        # a refused client certificate leaves the channel UNAVAILABLE.
        assert await can_call(servers.port, creds) is with_client_cert
    finally:
        await servers.stop(grace=0)
