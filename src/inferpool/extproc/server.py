"""The gRPC side of `inferpool epp`: ext_proc on one port, grpc.health.v1 on another."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from inferpool.extproc import certs
from inferpool.extproc.stream import DEFAULT_SAMPLES_PER_SECOND, RequestStream, ResponseSampler, StreamConfig
from inferpool.guard.attach import GuardSet
from inferpool.observe.tracing import Tracing
from inferpool.request.plane import PlaneCore

log = logging.getLogger(__name__)

EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
HEALTH_SERVICES = ("", "liveness", "readiness", EXT_PROC_SERVICE)


@dataclass(frozen=True)
class GrpcConfig:
    host: str = "0.0.0.0"
    port: int = 9002  # upstream --grpc-port
    health_port: int = 9003  # upstream --grpc-health-port
    secure: bool = True  # upstream --secure-serving
    cert_path: Path | None = None  # directory with tls.crt / tls.key; None = self-signed
    client_ca: Path | None = None  # PEM CA bundle: mTLS, only clients (Envoy) with a cert it signed connect
    fallback_endpoints: int = 1
    response_samples_per_second: float = DEFAULT_SAMPLES_PER_SECOND  # when Envoy sends no response bodies
    every_status: bool = False  # read every answer's headers, not only the sampled share's
    # Share the ports with other processes (`--workers`). Off otherwise: grpc would set SO_REUSEPORT
    # by default, and a second picker on a taken port would then silently get half the streams.
    reuse_port: bool = False


class ExternalProcessor(pb_grpc.ExternalProcessorServicer):
    """Each Process call is one HTTP request; the pool is looked up per stream so resyncs apply."""

    def __init__(
        self,
        core: PlaneCore,
        pool: Callable[[], str | None],
        config: StreamConfig,
        guards: Callable[[], GuardSet] | None = None,
    ) -> None:
        self._core = core
        self._pool = pool
        self._config = config
        self._guards = guards
        self.messages: dict[str, int] = {}  # ProcessingRequest kind -> count (the picker's real work)
        self.streams = 0

    async def Process(
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ProcessingResponse]:
        pool = self._pool()
        if pool is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "inference pool not synced yet")
            return
        stream = RequestStream(self._core, pool, self._config, self._guards)
        self.streams += 1
        counts = self.messages
        try:
            async for message in request_iterator:
                kind = message.WhichOneof("request") or "none"
                counts[kind] = counts.get(kind, 0) + 1
                for answer in await stream.handle(message):
                    yield answer
                if stream.done:
                    return
        finally:
            stream.close()


class GrpcServers:
    """ext_proc and health servers; health turns SERVING once `mark_ready` is called."""

    def __init__(
        self,
        core: PlaneCore,
        pool: Callable[[], str | None],
        config: GrpcConfig,
        guards: Callable[[], GuardSet] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.config = config
        self.health = health.aio.HealthServicer()
        reuse = ("grpc.so_reuseport", 1 if config.reuse_port else 0)
        self._ext_proc = grpc.aio.server(
            options=[("grpc.max_receive_message_length", 16 * 1024 * 1024), reuse]
        )
        self.processor = ExternalProcessor(
            core,
            pool,
            StreamConfig(
                config.fallback_endpoints,
                ResponseSampler(config.response_samples_per_second),
                tracing,
                every_status=config.every_status,
            ),
            guards,
        )
        pb_grpc.add_ExternalProcessorServicer_to_server(self.processor, self._ext_proc)
        self._health = grpc.aio.server(options=[reuse])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._health)
        self.port = 0
        self.health_port = 0

    async def start(self) -> None:
        address = f"{self.config.host}:{self.config.port}"
        if self.config.secure:
            key, cert = certs.load(self.config.cert_path) if self.config.cert_path else certs.self_signed()
            ca = self.config.client_ca.read_bytes() if self.config.client_ca else None
            credentials = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
            )
            self.port = self._ext_proc.add_secure_port(address, credentials)
        else:
            self.port = self._ext_proc.add_insecure_port(address)
        self.health_port = self._health.add_insecure_port(f"{self.config.host}:{self.config.health_port}")
        for service in HEALTH_SERVICES:
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._health.start()
        await self._ext_proc.start()

    async def mark_ready(self, ready: bool = True) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in HEALTH_SERVICES:
            await self.health.set(service, status)

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self._ext_proc.stop(grace)
        await self._health.stop(0)
