"""The gRPC side of `inferpool epp`: ext_proc on one port, grpc.health.v1 on another.

ext_proc runs on grpc's threaded server by default: each stream holds one thread, which hands
every message to the event loop the core runs on and waits for its answers. With grpc.aio
instead, the completion of every gRPC operation wakes the event loop and runs there, beside the
core; measured behind Envoy on one core (docs/epp.md, "The gRPC server"), the threaded server
costs ≈35 % less CPU per request. Its price is a thread per open stream (≈30 KB more memory per
stream than grpc.aio), so the number of concurrent streams is bounded (`stream_threads`; 0 =
grpc.aio, unbounded), and each response chunk costs more where Envoy sends every one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
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
# "inference-extension": what upstream's inferencepool chart probes a single-replica EPP on
# (upstream's EPP answers any name while leader election is off)
LIVENESS_SERVICE = "liveness"
HEALTH_SERVICES = ("", LIVENESS_SERVICE, "readiness", "inference-extension", EXT_PROC_SERVICE)
NOT_SYNCED = "inference pool not synced yet"
# How often a stream's thread waiting for the loop checks that the loop still runs (a process
# shutting down must not keep threads that wait for answers that can no longer come).
_LOOP_CHECK_S = 1.0


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
    # Concurrent ext_proc streams (= requests in flight through this process), one thread each;
    # one more is refused (RESOURCE_EXHAUSTED: Envoy fails it open or closed). 0: grpc.aio server.
    stream_threads: int = 8192
    # upstream --health-checking: grpc.health.v1 on the ext_proc port as well (a proxy that
    # health-checks its ext_proc cluster there), with the same statuses as the health port
    health_on_ext_proc: bool = False


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
        self._counting = threading.Lock()  # the threaded server counts from the streams' threads

    def open_stream(self) -> RequestStream | None:
        """A new stream's state machine, counted; None while the pool is not known yet."""
        pool = self._pool()
        if pool is None:
            return None
        with self._counting:
            self.streams += 1
        return RequestStream(self._core, pool, self._config, self._guards)

    def count_message(self, kind: str) -> None:
        with self._counting:
            self.messages[kind] = self.messages.get(kind, 0) + 1

    async def Process(
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ProcessingResponse]:
        stream = self.open_stream()
        if stream is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, NOT_SYNCED)
            return
        try:
            async for message in request_iterator:
                self.count_message(message.WhichOneof("request") or "none")
                for answer in await stream.handle(message):
                    yield answer
                if stream.done:
                    return
        finally:
            stream.close()


class _LoopBridge:
    """One stream's RequestStream, driven on the event loop from the stream's gRPC thread.

    `handle` runs on the gRPC thread: a body chunk that needs only the stream's own state is
    answered there (`RequestStream.answer_at_once`), any other message on the loop, the thread
    waiting for its answers. `end` may be called from any thread, any number of times: the
    stream closes once, on the loop, after a message still being handled there (cancelled
    first, as grpc.aio cancels its handler) has finished. A reset that comes while the thread
    answers a chunk may close the stream meanwhile; the chunk's accounting then reaches a
    finished request and is ignored."""

    def __init__(
        self, processor: ExternalProcessor, stream: RequestStream, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._processor = processor
        self._stream = stream
        self._loop = loop
        self._task: asyncio.Task[list[pb.ProcessingResponse]] | None = None
        self._ended = False  # read and written on the loop only

    @property
    def done(self) -> bool:
        return self._stream.done

    def handle(self, message: pb.ProcessingRequest) -> list[pb.ProcessingResponse]:
        kind = message.WhichOneof("request") or "none"
        self._processor.count_message(kind)
        answers = self._stream.answer_at_once(message)  # a body chunk: no trip to the loop
        if answers is not None:
            return answers
        answered: concurrent.futures.Future[list[pb.ProcessingResponse]] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._start, message, answered)
        while True:  # CancelledError once the stream has ended
            try:
                return answered.result(timeout=_LOOP_CHECK_S)
            except TimeoutError:
                if self._loop.is_closed():  # nothing will answer: do not hold the thread forever
                    raise concurrent.futures.CancelledError from None

    def end(self) -> None:
        self._loop.call_soon_threadsafe(self._end)

    def _start(
        self, message: pb.ProcessingRequest, answered: concurrent.futures.Future[list[pb.ProcessingResponse]]
    ) -> None:
        if self._ended:
            answered.cancel()
            return
        self._task = task = self._loop.create_task(self._stream.handle(message))
        task.add_done_callback(functools.partial(_settle, answered))

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            task.add_done_callback(lambda _task: self._stream.close())
        else:
            self._stream.close()


def _settle(
    answered: concurrent.futures.Future[list[pb.ProcessingResponse]],
    task: asyncio.Task[list[pb.ProcessingResponse]],
) -> None:
    if task.cancelled():
        answered.cancel()
    elif (err := task.exception()) is not None:
        answered.set_exception(err)
    else:
        answered.set_result(task.result())


class ThreadedExternalProcessor(pb_grpc.ExternalProcessorServicer):
    """The same ext_proc service on grpc's threaded server (see the module's docstring)."""

    def __init__(self, processor: ExternalProcessor, loop: asyncio.AbstractEventLoop) -> None:
        self._processor = processor
        self._loop = loop
        self._hinted = False  # the hint below is logged once per process

    def Process(
        self, request_iterator: Iterator[pb.ProcessingRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ProcessingResponse]:
        stream = self._processor.open_stream()
        if stream is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, NOT_SYNCED)
            return
        bridge = _LoopBridge(self._processor, stream, self._loop)
        context.add_callback(bridge.end)  # the stream is over: done, cancelled or reset
        try:
            first = True
            for message in request_iterator:
                yield from bridge.handle(message)
                if bridge.done:
                    return
                if first:  # the modes come with the first message: a stream asks this once
                    first = False
                    if stream.every_chunk_comes and not self._hinted:
                        self._hinted = True
                        log.warning(
                            "Envoy sends every response chunk (FULL_DUPLEX_STREAMED): each costs more on "
                            "the threaded ext_proc server than on grpc.aio; with long streamed answers, "
                            "--stream-threads 0 is cheaper (docs/epp.md, 'The gRPC server')"
                        )
        except concurrent.futures.CancelledError:
            return  # the stream ended while its message was handled
        finally:
            bridge.end()


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
        options = [("grpc.max_receive_message_length", 16 * 1024 * 1024), reuse]
        self._ext_proc: grpc.Server | grpc.aio.Server
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        if config.stream_threads > 0:
            self._threads = concurrent.futures.ThreadPoolExecutor(
                config.stream_threads, thread_name_prefix="ext-proc"
            )
            self._ext_proc = grpc.server(
                self._threads, options=options, maximum_concurrent_rpcs=config.stream_threads
            )
        else:
            self._ext_proc = grpc.aio.server(options=options)
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
        if isinstance(self._ext_proc, grpc.aio.Server):
            pb_grpc.add_ExternalProcessorServicer_to_server(self.processor, self._ext_proc)
        # The threaded ext_proc server needs the health servicer of its own kind (sync)
        self._ext_proc_health: health.HealthServicer | None = None
        if config.health_on_ext_proc:
            if isinstance(self._ext_proc, grpc.aio.Server):
                health_pb2_grpc.add_HealthServicer_to_server(self.health, self._ext_proc)
            else:
                self._ext_proc_health = health.HealthServicer()
                health_pb2_grpc.add_HealthServicer_to_server(self._ext_proc_health, self._ext_proc)
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
        await self.mark_ready(False)
        await self._health.start()
        if isinstance(self._ext_proc, grpc.aio.Server):
            await self._ext_proc.start()
        else:  # the threaded server hands messages to the loop it is started from
            servicer = ThreadedExternalProcessor(self.processor, asyncio.get_running_loop())
            pb_grpc.add_ExternalProcessorServicer_to_server(servicer, self._ext_proc)
            self._ext_proc.start()

    async def mark_ready(self, ready: bool = True) -> None:
        """Every health service but liveness: SERVING once the pool has synced. Liveness answers
        SERVING whenever the process serves, as upstream's EPP does: a pool that syncs late (or
        never: a 403, a wrong group) must not get the pod restarted in a loop."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in HEALTH_SERVICES:
            service_status = health_pb2.HealthCheckResponse.SERVING if service == LIVENESS_SERVICE else status
            await self.health.set(service, service_status)
            if self._ext_proc_health is not None:
                self._ext_proc_health.set(service, service_status)

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        if self._ext_proc_health is not None:
            self._ext_proc_health.enter_graceful_shutdown()
        if isinstance(self._ext_proc, grpc.aio.Server):
            await self._ext_proc.stop(grace)
        else:  # streams still open get `grace` seconds; the loop keeps answering them meanwhile
            await asyncio.to_thread(self._ext_proc.stop(grace).wait)
        if self._threads is not None:
            self._threads.shutdown(wait=False)  # the streams' threads, idle now
        await self._health.stop(0)
