"""The ext_proc servers over real gRPC: the threaded one (default) and grpc.aio behave alike."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from free_ports import free_port
from inferpool.extproc.server import ExternalProcessor, GrpcConfig, GrpcServers, _LoopBridge
from inferpool.extproc.stream import StreamConfig

from .fakes import POOL, FakeRouted, FakeRouter, endpoints
from .test_stream import BODY, body_msg, headers_msg, sampled_headers_msg

SERVERS = pytest.mark.parametrize("stream_threads", [8, 0], ids=["threaded", "aio"])


@dataclass
class GatedRouter(FakeRouter):
    """Routes only once `gate` is set, as a request waiting in flow control does; records a cancel."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def route_async(self, *args: object, **kwargs: object) -> FakeRouted:  # type: ignore[override]
        self.waiting.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return await super().route_async(*args, **kwargs)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(
    router: FakeRouter, stream_threads: int
) -> AsyncIterator[tuple[GrpcServers, pb_grpc.ExternalProcessorStub]]:
    config = GrpcConfig(
        host="127.0.0.1",
        port=free_port(),
        health_port=free_port(),
        secure=False,
        response_samples_per_second=0,  # no answer is read unless a test's Envoy sends it
        stream_threads=stream_threads,
    )
    servers = GrpcServers(router, lambda: POOL, config)  # type: ignore[arg-type]  # the fake core
    await servers.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{servers.port}") as channel:
            yield servers, pb_grpc.ExternalProcessorStub(channel)
    finally:
        await servers.stop(grace=0)


async def wait_for(condition: Callable[[], object], timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the release happens on the server's side, no event
            await asyncio.sleep(0.01)


@SERVERS
async def test_a_request_is_picked_and_released_when_its_stream_ends(stream_threads: int) -> None:
    router = FakeRouter(endpoints(8001))
    async with running(router, stream_threads) as (servers, stub):
        call = stub.Process()
        await call.write(sampled_headers_msg())  # response bodies NONE, as the reference config
        first = await call.read()
        assert first.WhichOneof("response") == "request_headers"
        assert first.HasField("mode_override")  # unsampled: no response headers asked for
        await call.write(body_msg(BODY))
        pick = await call.read()
        headers = {
            h.header.key: h.header.raw_value for h in pick.request_body.response.header_mutation.set_headers
        }
        assert headers["x-gateway-destination-endpoint"] == b"10.0.0.1:8001"
        [routed] = router.routed
        assert ("finish", (0, None)) not in routed.events
        await call.done_writing()  # Envoy ends the stream with the HTTP request
        await wait_for(lambda: any(e[0] == "finish" for e in routed.events))
        # The picker read no answer (unsampled here), so the status is 0: not seen.
        assert [e for e in routed.events if e[0] == "finish"] == [("finish", (0, None))]
        assert servers.processor.streams == 1
        assert servers.processor.messages == {"request_headers": 1, "request_body": 1}


@SERVERS
async def test_a_stream_reset_while_its_request_waits_cancels_the_wait(stream_threads: int) -> None:
    router = GatedRouter(endpoints(8001))
    async with running(router, stream_threads) as (_servers, stub):
        call = stub.Process()
        await call.write(headers_msg())
        await call.read()
        await call.write(body_msg(BODY))
        await asyncio.wait_for(router.waiting.wait(), 20)
        call.cancel()  # the client went away: Envoy resets the stream
        # The wait is cancelled where it runs (flow control records the 499 there), not left hanging.
        await asyncio.wait_for(router.cancelled.wait(), 20)
        assert router.routed == []
        # The server's thread is free again: the next stream is served.
        router.gate.set()
        again = stub.Process()
        await again.write(headers_msg())
        await again.read()
        await again.write(body_msg(BODY))
        assert (await again.read()).WhichOneof("response") == "request_body"
        await again.done_writing()


async def test_health_answers_the_services_the_probes_name() -> None:
    # ours (liveness, readiness), Envoy's (the ext_proc service) and what upstream's chart probes
    async with running(FakeRouter(endpoints(8001)), 8) as (servers, _stub):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{servers.health_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def status(service: str) -> int:
                answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
                return int(answer.status)

            names = [
                "",
                "liveness",
                "readiness",
                "inference-extension",
                "envoy.service.ext_proc.v3.ExternalProcessor",
            ]
            serving, not_serving = (
                health_pb2.HealthCheckResponse.SERVING,
                health_pb2.HealthCheckResponse.NOT_SERVING,
            )
            # before the pool syncs: alive (no restart loop for a late pool), not ready
            assert [await status(n) for n in names] == [not_serving, serving, *[not_serving] * 3]
            await servers.mark_ready()
            assert [await status(n) for n in names] == [serving] * 5
            await servers.mark_ready(False)  # the pool went away again
            assert [await status(n) for n in names] == [not_serving, serving, *[not_serving] * 3]
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await status("no-such-service")
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


@SERVERS
async def test_health_checking_serves_health_on_the_ext_proc_port_too(stream_threads: int) -> None:
    # upstream's --health-checking, on either server; without it the ext_proc port has no health
    for on in (True, False):
        config = GrpcConfig(host="127.0.0.1", port=free_port(), health_port=free_port(), secure=False,
                            stream_threads=stream_threads, health_on_ext_proc=on)  # fmt: skip
        servers = GrpcServers(FakeRouter(endpoints(8001)), lambda: POOL, config)  # type: ignore[arg-type]
        await servers.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{servers.port}") as channel:
                check = health_pb2_grpc.HealthStub(channel).Check
                if not on:
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await check(health_pb2.HealthCheckRequest(service="inference-extension"))
                    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
                    continue
                answer = await check(health_pb2.HealthCheckRequest(service="inference-extension"))
                assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
                await servers.mark_ready()
                answer = await check(health_pb2.HealthCheckRequest(service=""))
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await servers.stop(grace=0)


async def test_the_threaded_server_refuses_a_stream_over_its_threads() -> None:
    router = FakeRouter(endpoints(8001))
    async with running(router, stream_threads=1) as (_servers, stub):
        held = stub.Process()
        await held.write(headers_msg())
        await held.read()  # one stream open: the only thread is taken
        refused = stub.Process()  # nothing written: refused at its start, a write would race that
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async with asyncio.timeout(20):  # a server that took the stream would wait for a message
                await refused.read()
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await held.write(body_msg(BODY))
        assert (await held.read()).WhichOneof("response") == "request_body"
        await held.done_writing()
        assert await held.code() == grpc.StatusCode.OK
        # The thread is back: a new stream is served. grpc frees the slot just after the status
        # went out, with nothing to wait on, so the first tries may still meet the limit.
        async with asyncio.timeout(20):
            while True:
                later = stub.Process()
                try:
                    await later.write(headers_msg())
                    assert (await later.read()).WhichOneof("response") == "request_headers"
                    break
                except grpc.aio.AioRpcError as refused_again:
                    assert refused_again.code() in (
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        grpc.StatusCode.INTERNAL,
                    )
                    await asyncio.sleep(0.01)
        await later.done_writing()


@SERVERS
async def test_no_stream_before_the_pool_is_known(stream_threads: int) -> None:
    config = GrpcConfig(
        host="127.0.0.1",
        port=free_port(),
        health_port=free_port(),
        secure=False,
        stream_threads=stream_threads,
    )
    servers = GrpcServers(FakeRouter(endpoints(8001)), lambda: None, config)  # type: ignore[arg-type]
    await servers.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{servers.port}") as channel:
            # No message is written: the stream is refused at its start, and a write would race that.
            call = pb_grpc.ExternalProcessorStub(channel).Process()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await servers.stop(grace=0)


async def test_the_threaded_server_says_once_when_envoy_sends_every_chunk(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every response chunk costs more on the threaded server: it names the cheaper one, once."""
    router = FakeRouter(endpoints(8001))
    async with running(router, stream_threads=8) as (_servers, stub):
        for _ in range(2):
            call = stub.Process()
            await call.write(headers_msg(streamed=True))  # FULL_DUPLEX_STREAMED both ways
            await call.write(body_msg(BODY))
            answers = [await call.read(), await call.read()]  # headers, then the body's pick
            assert [a.WhichOneof("response") for a in answers] == ["request_headers", "request_body"]
            await call.done_writing()
            assert await call.code() == grpc.StatusCode.OK
    hints = [r for r in caplog.records if "--stream-threads 0" in r.getMessage()]
    assert len(hints) == 1 and hints[0].levelname == "WARNING"


def test_a_thread_waiting_on_a_closed_loop_is_let_go() -> None:
    """A stream's thread waits for answers from the core's loop; if that loop is gone (a process
    shutting down), the wait ends instead of holding the thread, and its exit, forever."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    router = GatedRouter(endpoints(8001))
    processor = ExternalProcessor(router, lambda: POOL, StreamConfig())  # type: ignore[arg-type]
    stream = processor.open_stream()
    assert stream is not None
    bridge = _LoopBridge(processor, stream, loop)
    bridge.handle(headers_msg())
    outcome: list[BaseException] = []

    def wait_for_the_pick() -> None:
        try:
            bridge.handle(body_msg(BODY))  # waits at the gate, which never opens
        except BaseException as err:
            outcome.append(err)

    waiter = threading.Thread(target=wait_for_the_pick, daemon=True)  # daemon: a failure must not hang pytest
    waiter.start()
    deadline = time.monotonic() + 20
    while not router.waiting.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert router.waiting.is_set()
    loop.call_soon_threadsafe(loop.stop)
    runner.join(10)
    loop.close()  # the loop is gone with the request still waiting in it
    waiter.join(10)
    assert not waiter.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], concurrent.futures.CancelledError)
