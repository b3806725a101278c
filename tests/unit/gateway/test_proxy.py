"""The data plane against small real upstream servers on loopback, with the real request core."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

import aiohttp
import orjson
import pytest
from aiohttp import web

from free_ports import free_port
from inferpool.admission import AdmissionConfig
from inferpool.gateway import direct_relay
from inferpool.gateway.config import ProxyConfig, ServeConfig
from inferpool.gateway.routing import (
    BackendRef,
    HTTPRoute,
    Listener,
    ParentRef,
    PathMatch,
    RouteMatch,
    RouteRule,
)
from inferpool.gateway.server import GatewayServer
from inferpool.observe.accesslog import AccessLog
from inferpool.records import RequestRecord
from inferpool.request.accounting import ResponseAccounting
from inferpool.request.core import Core, CoreConfig
from inferpool.request.director import RoutedRequest
from inferpool.state import Datastore, Endpoint, ModelRoute, Pool, TargetModel

GW = "default/gw"
POOL = "default/pool"


@dataclass
class Upstream:
    """A tiny model server whose behaviour each test sets."""

    name: str
    # ok | fail500 | sse | slow | hang | linger (SSE done, then no EOF) | cookie | short (a JSON
    # answer cut off before its Content-Length) | long (20,000 events back to back) | flood
    # (2,000 events of 16 KB) | cut (one event, then the connection drops mid-stream)
    behaviour: str = "ok"
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # a long or flood answer was all written
    seen: list[dict[str, object]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append({"headers": request.headers.copy(), "body": body, "path": request.path_qs})
        if self.behaviour == "fail500":
            return web.json_response({"error": {"message": "boom", "code": 500}}, status=500)
        if self.behaviour == "hang":
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if self.behaviour in ("sse", "slow", "linger"):
            resp = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Connection": "keep-alive, X-Up",
                    "X-Up": "secret",
                    "Keep-Alive": "timeout=5",
                }
            )
            await resp.prepare(request)
            await resp.write(b'data: {"choices":[{"text":"a"}]}\n\n')
            try:
                if self.behaviour == "slow":
                    await asyncio.wait_for(self.release.wait(), 30)
                await resp.write(
                    b'data: {"choices":[{"text":"b"}],"usage":{"prompt_tokens":3,"total_tokens":5,"completion_tokens":2}}\n\n'
                )
                await resp.write(b"data: [DONE]\n\n")
                if self.behaviour == "linger":
                    await asyncio.wait_for(self.release.wait(), 30)
            except (asyncio.CancelledError, ConnectionResetError):
                self.cancelled.set()
                raise
            await resp.write_eof()
            return resp
        if self.behaviour in ("long", "flood", "cut"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for event in sse_events(self.behaviour):
                await resp.write(event)
            if self.behaviour == "cut":
                assert request.transport is not None
                request.transport.close()
                return resp
            await resp.write_eof()
            self.finished.set()
            return resp
        if self.behaviour == "short":
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.content_length = 100
            await resp.prepare(request)
            await resp.write(b'{"served_by":')
            assert request.transport is not None
            request.transport.close()
            return resp
        model = orjson.loads(body).get("model") if body else None
        answer = web.json_response(
            {
                "served_by": self.name,
                "model": model,
                "usage": {"prompt_tokens": 4, "total_tokens": 6, "completion_tokens": 2},
            }
        )
        if self.behaviour == "cookie":
            answer.set_cookie("session", f"for-request-{len(self.seen)}")
        return answer

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, handler_cancellation=True)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()


def sse_events(behaviour: str) -> list[bytes]:
    """The events a long, flood or cut answer streams, [DONE] included (not for cut)."""
    if behaviour == "cut":
        return [b'data: {"choices":[{"text":"a"}]}\n\n']
    count, pad = (20_000, "") if behaviour == "long" else (2000, "x" * 16_000)
    events = [b'data: {"choices":[{"text":"%d%s"}]}\n\n' % (i, pad.encode()) for i in range(count)]
    return [*events, b"data: [DONE]\n\n"]


@dataclass
class Rig:
    gateway: GatewayServer
    upstreams: list[Upstream]
    datastore: Datastore
    log: io.StringIO
    url: str
    session: aiohttp.ClientSession

    async def post(self, path: str = "/v1/completions", **body: object) -> aiohttp.ClientResponse:
        payload = {"model": "food-review", "prompt": "hi", "max_tokens": 4, **body}
        return await self.session.post(self.url + path, json=payload)


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rig() -> AsyncIterator[RigFactory]:
    made: list[Rig] = []

    async def make(
        *behaviours: str,
        dead: int = 0,
        timeout_s: float | None = None,
        backend_timeout_s: float | None = None,
        max_body: int = 1 << 20,
        max_retries: int = 2,
    ) -> Rig:
        ds = Datastore()
        ds.upsert_pool(Pool("default", "pool", {"app": "m"}, [8000]))
        ds.upsert_model(
            ModelRoute(
                "default", "food-review", "food-review", "pool", targets=[TargetModel("food-review-1", 100)]
            )
        )
        upstreams = [Upstream(f"u{i}", b) for i, b in enumerate(behaviours)]
        for u in upstreams:
            await u.start()
        ports = [free_port() for _ in range(dead)] + [u.port for u in upstreams]
        for i, port in enumerate(ports):
            ds.upsert_endpoint(Endpoint(f"ep{i}", "127.0.0.1", port, POOL, {"app": "m"}))
        core = Core(
            CoreConfig(scheduler="round-robin", admission=AdmissionConfig(enabled=False), scrape=None),
            datastore=ds,
        )
        listener = Listener(GW, "http", free_port())
        rule = RouteRule(
            (RouteMatch(PathMatch("PathPrefix", "/v1")),),
            (BackendRef("InferencePool", "pool", "default"),),
            timeout_s=timeout_s,
            backend_timeout_s=backend_timeout_s,
        )
        route = HTTPRoute("default", "r", (ParentRef("gw", "default"),), (), (rule,))
        log = io.StringIO()
        config = ServeConfig(
            admin_port=0, proxy=ProxyConfig(max_retries=max_retries, max_body_bytes=max_body)
        )
        gateway = GatewayServer(core, [listener], [route], config, access_log=AccessLog(log))
        await gateway.start()
        session = aiohttp.ClientSession()
        r = Rig(gateway, upstreams, ds, log, gateway.bound[0].url, session)
        made.append(r)
        return r

    yield make
    for r in made:
        await r.session.close()
        await r.gateway.stop(drain=False)
        for u in r.upstreams:
            u.release.set()
            await u.stop()


def log_lines(r: Rig) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in r.log.getvalue().splitlines()]


async def the_only_log_line(r: Rig) -> dict[str, object]:
    """The access log's one line, once the request has ended (up to 10 s)."""
    for _ in range(200):
        if log_lines(r):
            break
        await asyncio.sleep(0.05)
    (line,) = log_lines(r)
    return line


async def test_forwards_with_rewritten_model_and_served_header(rig: RigFactory) -> None:
    r = await rig("ok")
    resp = await r.post()
    body = await resp.json()
    assert resp.status == 200
    assert body["model"] == "food-review-1"  # InferenceModel target rewrote the body
    assert resp.headers["x-gateway-destination-endpoint-served"] == f"127.0.0.1:{r.upstreams[0].port}"
    rid = resp.headers["x-request-id"]
    seen = r.upstreams[0].seen[0]
    assert seen["headers"]["x-request-id"] == rid  # type: ignore[index]
    assert int(seen["headers"]["Content-Length"]) == len(seen["body"])  # type: ignore[index, arg-type]
    line = log_lines(r)[-1]
    assert line["request_id"] == rid and line["status"] == 200 and line["model"] == "food-review"
    assert line["target_model"] == "food-review-1" and line["output_tokens"] == 2 and line["scores"]


async def test_connect_error_is_retried_on_next_endpoint(rig: RigFactory) -> None:
    r = await rig("ok", dead=1)
    for _ in range(4):  # round-robin starts on both endpoints in turn
        resp = await r.post()
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["served_by"] == "u0"
    attempts = [line["attempts"] for line in log_lines(r)]
    assert 2 in attempts


async def test_5xx_before_first_byte_is_retried_and_last_5xx_is_relayed(rig: RigFactory) -> None:
    r = await rig("fail500", "ok")
    for _ in range(2):
        resp = await r.post()
        assert resp.status == 200
    r2 = await rig("fail500", "fail500")
    resp = await r2.post()
    assert resp.status == 500
    assert (await resp.json())["error"]["message"] == "boom"


async def test_every_try_failing_is_502(rig: RigFactory) -> None:
    r = await rig(dead=3, max_retries=1)
    resp = await r.post()
    body = await resp.json()
    assert resp.status == 502
    assert body["error"]["type"] == "BadGatewayError" and body["error"]["code"] == 502
    assert "2 tried" in body["error"]["message"]
    assert resp.headers["Server"] == "inferpool"  # not aiohttp's and Python's versions


async def test_a_whole_answer_cut_short_is_a_clean_502(rig: RigFactory) -> None:
    """A non-streamed answer is read whole before the client sees it, so a model server that
    goes away mid-answer leaves the client a JSON 502, not a truncated body."""
    r = await rig("short")
    resp = await r.post()
    body = await resp.json()
    assert resp.status == 502, body
    assert body["error"]["code"] == 502 and "went away mid-answer" in body["error"]["message"]
    line = log_lines(r)[-1]
    assert line["status"] == 502 and "upstream broke mid-response" in str(line["error"])


async def test_sse_is_relayed_unbuffered_and_hop_by_hop_dropped(rig: RigFactory) -> None:
    r = await rig("slow")
    resp = await r.post(stream=True)
    assert resp.status == 200
    assert "x-up" not in resp.headers and "keep-alive" not in resp.headers
    first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 10)  # arrives while upstream still holds
    assert b'"a"' in first
    r.upstreams[0].release.set()
    rest = await resp.read()
    assert rest.endswith(b"data: [DONE]\n\n")
    await asyncio.sleep(0)
    line = log_lines(r)[-1]
    assert line["output_tokens"] == 2 and line["input_tokens"] == 3 and "ttft_ms" in line


async def test_client_disconnect_cancels_upstream(rig: RigFactory) -> None:
    r = await rig("slow")
    resp = await r.post(stream=True)
    await resp.content.readuntil(b"\n\n")
    resp.close()  # client goes away mid-stream
    await asyncio.wait_for(r.upstreams[0].cancelled.wait(), 10)
    for _ in range(100):
        if r.datastore.endpoints(POOL)[0].in_flight == 0:
            break
        await asyncio.sleep(0.05)
    assert r.datastore.endpoints(POOL)[0].in_flight == 0


async def test_client_leaving_after_done_is_a_completed_request(rig: RigFactory) -> None:
    """openai's SDK closes the connection once it has read `data: [DONE]`: that is success, not 499."""
    r = await rig("linger")
    resp = await r.post(stream=True)
    body = b""
    while b"data: [DONE]" not in body:
        body += await resp.content.readany()
    resp.close()
    line = await the_only_log_line(r)
    assert line["status"] == 200 and not line.get("error"), line
    assert r.datastore.endpoints(POOL)[0].in_flight == 0


async def test_a_long_stream_arrives_whole_and_the_connection_serves_the_next(rig: RigFactory) -> None:
    """Thousands of events, each its own HTTP chunk (aiohttp's reader pauses a connection
    after 16,384 unread chunk boundaries; the direct relay must not leave them)."""
    r = await rig("long")
    expected = b"".join(sse_events("long"))
    for _ in range(2):  # the second over the pooled upstream connection
        resp = await r.post(stream=True)
        assert resp.status == 200
        assert await asyncio.wait_for(resp.read(), 30) == expected
    await asyncio.sleep(0)
    lines = log_lines(r)
    assert [line["output_tokens"] for line in lines] == [20_000, 20_000] and lines[-1]["status"] == 200


async def test_a_client_that_stops_reading_holds_the_model_server_back(rig: RigFactory) -> None:
    """Flow control: while the client reads nothing, the gateway does not read the rest of a
    32 MB answer into memory (the model server is held back), and the client then gets every
    byte in order."""
    r = await rig("flood")
    resp = await r.post(stream=True)
    first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 10)
    await asyncio.sleep(1.0)  # the client reads nothing meanwhile
    assert not r.upstreams[0].finished.is_set()
    rest = await asyncio.wait_for(resp.read(), 60)
    assert first + rest == b"".join(sse_events("flood"))
    assert r.upstreams[0].finished.is_set()


async def test_a_stream_the_model_server_drops_ends_with_an_error_event(rig: RigFactory) -> None:
    r = await rig("cut")
    resp = await r.post(stream=True)
    body = await asyncio.wait_for(resp.read(), 10)
    first, error = body.split(b"\n\n", 1)
    assert first == b'data: {"choices":[{"text":"a"}]}'
    assert error.startswith(b"data: ") and b"went away mid-stream" in error
    line = await the_only_log_line(r)
    assert line["status"] == 502 and "upstream broke mid-response" in str(line["error"])


async def test_a_stream_is_relayed_directly_unless_each_try_has_a_deadline(
    rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The installed aiohttp's reader has what the direct relay keeps up to date, so a plain
    stream goes through it; with `timeouts.backendRequest` (enforced by aiohttp only on a task
    reading through its reader) the relay loop carries it."""
    assert direct_relay._READER_FITS
    run, runs = direct_relay.DirectRelay.run, 0

    async def counted_run(self: direct_relay.DirectRelay, response: web.StreamResponse) -> None:
        nonlocal runs
        runs += 1
        await run(self, response)

    monkeypatch.setattr(direct_relay.DirectRelay, "run", counted_run)
    expected = b"".join(sse_events("long"))
    plain = await rig("long")
    assert await (await plain.post(stream=True)).read() == expected
    assert runs == 1
    deadline = await rig("long", backend_timeout_s=30)
    assert await (await deadline.post(stream=True)).read() == expected
    assert runs == 1


@pytest.mark.parametrize("direct", [True, False], ids=["direct-relay", "relay-loop"])
async def test_an_accounting_error_mid_stream_ends_the_request_as_500(
    rig: RigFactory, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    """A bug in the response accounting (here: on the third piece) ends the request the same way
    whether the answer was being relayed directly or by the relay loop."""
    if not direct:
        monkeypatch.setattr(direct_relay, "usable", lambda *_: False)
    feed, calls = ResponseAccounting.feed, 0

    def failing_feed(self: ResponseAccounting, chunk: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("accounting broke")
        feed(self, chunk)

    monkeypatch.setattr(ResponseAccounting, "feed", failing_feed)
    r = await rig("long")
    resp = await r.post(stream=True)
    with pytest.raises(aiohttp.ClientPayloadError):
        await asyncio.wait_for(resp.read(), 30)
    line = await the_only_log_line(r)
    assert line["status"] == 500 and line["error"] == "RuntimeError: accounting broke", line
    assert calls == 3  # nothing fed the failed piece again


@pytest.mark.parametrize("direct", [True, False], ids=["direct-relay", "relay-loop"])
async def test_a_record_error_at_done_ends_the_request_as_500(
    rig: RigFactory, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    """A bug while recording the request as `data: [DONE]` passes (its first `finish`) ends
    it the same way whether the answer was relayed directly or by the relay loop: the client
    has every event, then the connection is cut; the record says 500."""
    if not direct:
        monkeypatch.setattr(direct_relay, "usable", lambda *_: False)
    finish, calls = RoutedRequest.finish, 0

    def failing_finish(self: RoutedRequest, status: int, error: str | None = None) -> RequestRecord:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("recording broke")
        return finish(self, status, error)

    monkeypatch.setattr(RoutedRequest, "finish", failing_finish)
    r = await rig("long")
    resp = await r.post(stream=True)
    body = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async for piece in resp.content.iter_any():
            body += piece
    assert body == b"".join(sse_events("long"))
    line = await the_only_log_line(r)
    assert line["status"] == 500 and line["error"] == "RuntimeError: recording broke", line


async def test_route_timeout_is_504(rig: RigFactory) -> None:
    r = await rig("hang", timeout_s=0.3)
    resp = await r.post()
    assert resp.status == 504
    assert (await resp.json())["error"]["type"] == "GatewayTimeoutError"
    await asyncio.wait_for(r.upstreams[0].cancelled.wait(), 10)


async def test_gateway_errors_are_vllm_shaped(rig: RigFactory) -> None:
    r = await rig("ok", max_body=200)
    cases = [
        (await r.session.post(r.url + "/other", json={}), 404),
        (await r.post(model="nope"), 404),
        (await r.session.post(r.url + "/v1/completions", data=b"{bad"), 400),
        (await r.post(prompt="x" * 500), 413),
    ]
    for resp, status in cases:
        body = await resp.json()
        assert resp.status == status, body
        assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["code"] == status
    lines = log_lines(r)
    assert [line["status"] for line in lines] == [404, 404, 400, 413]


async def test_no_ready_endpoint_is_503(rig: RigFactory) -> None:
    r = await rig("ok")
    for e in r.datastore.endpoints(POOL):
        r.datastore.set_ready(e, False)
    resp = await r.post()
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == 503


async def test_a_request_without_a_body_goes_to_an_endpoint_unscheduled(rig: RigFactory) -> None:
    # no model to schedule on (a GET of /v1/health, say): a random ready endpoint, as the EPP does
    r = await rig("ok", "ok")
    r.datastore.set_ready(r.datastore.endpoints(POOL)[0], False)
    for _ in range(3):
        resp = await r.session.get(r.url + "/v1/health?probe=1")
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["served_by"] == "u1"
    [seen] = {(s["path"], s["body"]) for s in r.upstreams[1].seen}
    assert seen == ("/v1/health?probe=1", b"") and not r.upstreams[0].seen
    lines = log_lines(r)
    assert [(line["status"], line["endpoint"], line.get("model")) for line in lines] == [
        (200, f"127.0.0.1:{r.upstreams[1].port}", None)
    ] * 3
    for e in r.datastore.endpoints(POOL):
        r.datastore.set_ready(e, False)
    resp = await r.session.get(r.url + "/v1/health")
    assert resp.status == 503 and (await resp.json())["error"]["code"] == 503


async def test_models_list_and_admin_api(rig: RigFactory) -> None:
    r = await rig("ok")
    resp = await r.session.get(r.url + "/v1/models")
    body = await resp.json()
    assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["food-review"]
    assert resp.headers["Server"] == "inferpool"
    await (await r.post()).read()
    admin = r.gateway.admin_url
    metrics = await (await r.session.get(f"{admin}/metrics")).text()
    assert (
        'inference_model_request_total{model_name="food-review",target_model_name="food-review-1"} 1.0'
        in metrics
    )
    assert 'inference_pool_ready_pods{name="pool"} 1.0' in metrics
    assert "inference_extension_scheduler_e2e_duration_seconds_count 1.0" in metrics
    assert (await r.session.get(f"{admin}/healthz")).status == 200
    assert (await r.session.get(f"{admin}/readyz")).status == 200
    state = await (await r.session.get(f"{admin}/api/state")).json()
    assert state["pools"][0]["key"] == POOL and state["pools"][0]["endpoints"][0]["in_flight"] == 0
    decisions = (await (await r.session.get(f"{admin}/api/decisions")).json())["decisions"]
    assert decisions[-1]["status"] == 200 and decisions[-1]["ranked"][0]["scores"] is not None
    for e in r.datastore.endpoints(POOL):
        r.datastore.set_ready(e, False)
    assert (await r.session.get(f"{admin}/readyz")).status == 503


async def test_models_list_carries_the_servers_own_entry_under_the_public_name(rig: RigFactory) -> None:
    r = await rig("ok")
    # what vLLM lists for a loaded adapter (reference 54_models_after_lora_load.http)
    permission = {"id": "modelperm-bdfc2b92052b4267", "object": "model_permission", "created": 1795528456,
                  "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                  "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                  "organization": "*", "group": None, "is_blocking": False}  # fmt: skip
    card = {"id": "food-review-1", "object": "model", "created": 1795528456, "owned_by": "vllm",
            "root": "/models/food-review-1", "parent": "base", "max_model_len": None,
            "permission": [permission]}  # fmt: skip
    for endpoint in r.datastore.endpoints(POOL):
        endpoint.metrics = replace(endpoint.metrics, model_cards={"food-review-1": card})
    body = await (await r.session.get(r.url + "/v1/models")).json()
    [entry] = body["data"]
    assert entry.pop("created") >= 1795528456  # the time of the call, as vLLM's
    assert entry == {key: value for key, value in card.items() if key != "created"} | {"id": "food-review"}
    assert list(entry) == ["id", "object", "owned_by", "root", "parent", "max_model_len", "permission"]


async def test_with_tracing_off_trace_headers_reach_the_model_server_untouched(rig: RigFactory) -> None:
    r = await rig("ok")
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    payload = {"model": "food-review", "prompt": "hi"}
    headers = {"traceparent": traceparent, "tracestate": "v=1"}
    resp = await r.session.post(r.url + "/v1/completions", json=payload, headers=headers)
    assert resp.status == 200
    seen = r.upstreams[0].seen[0]["headers"]
    assert (seen["traceparent"], seen["tracestate"]) == (traceparent, "v=1")  # type: ignore[index]
    assert r.gateway.tracing is None


async def test_a_client_cannot_name_the_prefill_endpoint(rig: RigFactory) -> None:
    """x-prefiller-host-port is the EPP's to set: a sidecar beside the decoder would obey it."""
    r = await rig("ok")
    resp = await r.session.post(
        r.url + "/v1/completions",
        json={"model": "food-review", "prompt": "hi", "max_tokens": 4},
        headers={"X-Prefiller-Host-Port": "169.254.169.254:80", "x-keep": "yes"},
    )
    assert resp.status == 200
    seen = r.upstreams[0].seen[0]["headers"]
    assert "x-prefiller-host-port" not in seen and seen["x-keep"] == "yes"  # type: ignore[operator, index]


async def test_a_cookie_one_client_was_given_never_reaches_the_model_server_for_another(
    rig: RigFactory,
) -> None:
    """The gateway relays Set-Cookie to the client it answers and keeps no cookie of its own: a
    jar in its upstream session would send one client's session cookie with everyone's requests
    (aiohttp's default jar keeps cookies of named hosts, not of IP addresses, so the endpoint is
    named here)."""
    r = await rig("cookie")
    r.datastore.upsert_endpoint(Endpoint("ep0", "localhost", r.upstreams[0].port, POOL, {"app": "m"}))
    payload = {"model": "food-review", "prompt": "hi", "max_tokens": 4}
    for _ in range(2):  # two clients that keep no cookies either
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
            resp = await client.post(r.url + "/v1/completions", json=payload)
            assert resp.status == 200
            assert resp.cookies["session"].value.startswith("for-request-")
    assert [seen["headers"].get("Cookie") for seen in r.upstreams[0].seen] == [None, None]  # type: ignore[attr-defined]
