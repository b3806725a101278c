"""The built-in gateway's two legs (vLLM's disaggregated protocol) against small real upstreams."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from test_proxy import free_port

from inferpool.admission import AdmissionConfig
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
from inferpool.request.core import Core, CoreConfig
from inferpool.roles import ROLE_LABEL
from inferpool.state import Datastore, Endpoint, ModelRoute, Pool, TargetModel

GW = "default/gw"
POOL = "default/pool"
PROMPT = "Read this contract carefully. " * 100  # ~750 estimated tokens: the pd profile splits it
PARAMS = {
    "do_remote_prefill": True,
    "do_remote_decode": False,
    "remote_block_ids": [1, 2, 3],
    "remote_engine_id": "engine-p",
    "remote_request_id": "req-p",
    "remote_host": "10.1.1.1",
    "remote_port": 5600,
    "tp_size": 1,
}


@dataclass
class Server:
    """A model server whose answers the test sets; it keeps every body it was sent."""

    # prefill: ok | fail500 | notjson | noparams | hang; decode: ok (JSON or SSE) | failpull
    answer: str = "ok"
    bodies: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.bodies.append(body)
        if self.answer == "failpull" and body.get("kv_transfer_params"):
            # vLLM's decoder with kv_load_failure_policy "fail" when the blocks cannot be read
            return web.json_response(
                {"message": "Internal server error", "type": "InternalServerError"}, status=500
            )
        if self.answer == "fail500":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if self.answer == "notjson":
            return web.Response(text="<html>", content_type="text/html")
        if self.answer == "hang":
            await asyncio.sleep(30)
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(b'data: {"choices":[{"text":"a"}],"usage":null}\n\n')
            # split in two writes mid-event: the usage rewrite must hold the partial line
            await resp.write(b'data: {"choices":[],"usage":{"prompt_tokens":750,"total_tokens":752,')
            await resp.write(b'"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":750}}}\n\n')
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        # a decoder counts pulled blocks as cached, like vLLM; the prefill counts its own hits
        prefill = body.get("kv_transfer_params", {}).get("do_remote_decode")
        details = {"cached_tokens": 128 if prefill else 750}
        usage = {
            "prompt_tokens": 750,
            "total_tokens": 751,
            "completion_tokens": 1,
            "prompt_tokens_details": details,
        }
        answer: dict[str, Any] = {"object": "text_completion", "choices": [{"text": "a"}], "usage": usage}
        if prefill and self.answer != "noparams":
            answer["kv_transfer_params"] = PARAMS
        return web.json_response(answer)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, handler_cancellation=True)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()


@dataclass
class Rig:
    prefill: Server
    decode: Server
    endpoints: dict[str, Endpoint]
    records: list[RequestRecord]
    url: str
    session: aiohttp.ClientSession

    async def post(self, **body: object) -> aiohttp.ClientResponse:
        payload = {"model": "food-review", "prompt": PROMPT, "max_tokens": 4, **body}
        return await self.session.post(self.url + "/v1/completions", json=payload)

    def idle(self) -> bool:
        return all(e.in_flight == 0 and e.in_flight_tokens == 0 for e in self.endpoints.values())


@pytest.fixture
async def rig() -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    made: list[tuple[Rig, GatewayServer]] = []

    async def make(
        prefill_answer: str = "ok",
        prefill_down: bool = False,
        try_timeout_s: float | None = None,
        decode_answer: str = "ok",
    ) -> Rig:
        ds = Datastore()
        ds.upsert_pool(Pool("default", "pool", {"app": "m"}, [8000]))
        ds.upsert_model(
            ModelRoute("default", "food-review", "food-review", "pool", targets=[TargetModel("fr-1", 1)])
        )
        prefill, decode = Server(prefill_answer), Server(decode_answer)
        await decode.start()
        if prefill_down:
            prefill.port = free_port()  # nothing listens there
        else:
            await prefill.start()
        endpoints = {}
        for role, server in (("prefill", prefill), ("decode", decode)):
            endpoints[role] = Endpoint(role, "127.0.0.1", server.port, POOL, {"app": "m", ROLE_LABEL: role})
            ds.upsert_endpoint(endpoints[role])
        core = Core(
            CoreConfig(scheduler="pd", admission=AdmissionConfig(enabled=False), scrape=None), datastore=ds
        )
        records: list[RequestRecord] = []
        core.director.subscribe(records.append)
        rule = RouteRule(
            (RouteMatch(PathMatch("PathPrefix", "/v1")),),
            (BackendRef("InferencePool", "pool", "default"),),
            backend_timeout_s=try_timeout_s,
        )
        route = HTTPRoute("default", "r", (ParentRef("gw", "default"),), (), (rule,))
        config = ServeConfig(admin_port=0, proxy=ProxyConfig())
        gateway = GatewayServer(
            core, [Listener(GW, "http", free_port())], [route], config, access_log=AccessLog(io.StringIO())
        )
        await gateway.start()
        r = Rig(prefill, decode, endpoints, records, gateway.bound[0].url, aiohttp.ClientSession())
        made.append((r, gateway))
        return r

    yield make
    for r, gateway in made:
        await r.session.close()
        await gateway.stop(drain=False)
        for server in (r.prefill, r.decode):
            if server.runner is not None:
                await server.runner.cleanup()


async def test_prefill_then_decode_with_its_kv_transfer_params(rig) -> None:  # type: ignore[no-untyped-def]
    r = await rig()
    resp = await r.post(stream=True, stream_options={"include_usage": True})
    text = await resp.text()
    assert resp.status == 200 and text.count('"usage":{') == 1 and text.endswith("data: [DONE]\n\n")
    (prefill_leg,) = r.prefill.bodies
    assert prefill_leg["model"] == "fr-1" and prefill_leg["prompt"] == PROMPT
    assert (
        prefill_leg["max_tokens"] == 1
        and prefill_leg["stream"] is False
        and "stream_options" not in prefill_leg
    )
    assert prefill_leg["kv_transfer_params"]["do_remote_decode"] is True
    (decode_leg,) = r.decode.bodies
    assert decode_leg["kv_transfer_params"] == PARAMS
    assert decode_leg["stream"] is True and decode_leg["stream_options"] == {"include_usage": True}
    assert decode_leg["max_tokens"] == 4 and decode_leg["model"] == "fr-1"
    # usage once, with the cached tokens the prefill server counted (as llm-d's sidecar reports them)
    assert '"prompt_tokens_details":{"cached_tokens":128}' in text
    (record,) = r.records
    assert record.endpoint == "decode" and record.prompt_tokens == 750 and record.completion_tokens == 2
    assert record.cached_tokens == 128
    assert record.prefill is not None and record.prefill.status == 200 and not record.prefill.fell_back
    assert r.idle()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("fail500", "prefill answered HTTP 500"),
        ("notjson", "prefill answer is not JSON"),
        ("noparams", "prefill answer has no kv_transfer_params for remote prefill"),
    ],
)
async def test_a_failed_prefill_falls_back_to_the_clients_body(rig, answer: str, error: str) -> None:  # type: ignore[no-untyped-def]
    r = await rig(answer)
    resp = await r.post()
    body = await resp.json()
    assert resp.status == 200 and body["usage"]["completion_tokens"] == 1
    (decode_leg,) = r.decode.bodies
    assert decode_leg == {"model": "fr-1", "prompt": PROMPT, "max_tokens": 4}  # as the client sent it
    (record,) = r.records
    assert record.prefill is not None and record.prefill.fell_back and record.prefill.error == error
    assert record.status == 200 and record.attempts == 1 and r.idle()


async def test_an_unreachable_or_slow_prefill_falls_back(rig) -> None:  # type: ignore[no-untyped-def]
    down = await rig(prefill_down=True)
    assert (await down.post()).status == 200
    assert down.records[0].prefill is not None and down.records[0].prefill.fell_back and down.idle()
    # refused: out of rotation until it scrapes well again, so the next request is not split
    assert not down.endpoints["prefill"].ready
    assert (await down.post(prompt=PROMPT + " next")).status == 200
    assert down.records[1].prefill is None and len(down.decode.bodies) == 2
    slow = await rig("hang", try_timeout_s=0.3)
    assert (await slow.post()).status == 200
    leg = slow.records[0].prefill
    assert leg is not None and leg.fell_back and leg.error == "prefill timed out" and slow.idle()


async def test_a_client_gone_during_the_prefill_releases_it(rig) -> None:  # type: ignore[no-untyped-def]
    r = await rig("hang")
    task = asyncio.create_task(r.post())
    for _ in range(200):
        if r.prefill.bodies:
            break
        await asyncio.sleep(0.01)
    assert r.endpoints["prefill"].in_flight == 1
    task.cancel()
    for _ in range(200):
        if r.records:
            break
        await asyncio.sleep(0.01)
    (record,) = r.records
    assert record.status == 499 and record.endpoint is None and not r.decode.bodies
    assert record.prefill is not None and record.prefill.error == "the request ended during its prefill leg"
    assert r.idle()


async def test_unstreamed_answer_reports_the_prefills_cached_tokens(rig) -> None:  # type: ignore[no-untyped-def]
    r = await rig()
    resp = await r.post()
    body = await resp.json()
    assert resp.status == 200  # sent chunked: the rewritten length is not known when headers go
    assert (
        body["usage"]["prompt_tokens_details"] == {"cached_tokens": 128} and r.records[0].cached_tokens == 128
    )
    fallback = await rig("fail500")
    body = await (await fallback.post()).json()
    assert body["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 750
    }  # the decoder prefilled: its own count


async def test_short_prompts_go_straight_to_the_decoder(rig) -> None:  # type: ignore[no-untyped-def]
    r = await rig()
    assert (await r.post(prompt="hi")).status == 200
    assert not r.prefill.bodies and r.records[0].prefill is None


async def test_a_decoder_that_cannot_read_the_kv_serves_the_clients_request(rig) -> None:  # type: ignore[no-untyped-def]
    r = await rig(decode_answer="failpull")
    resp = await r.post()
    body = await resp.json()
    assert resp.status == 200 and body["usage"]["prompt_tokens_details"] == {"cached_tokens": 750}
    pulled, local = r.decode.bodies  # the same decoder, first with the KV params, then without
    assert pulled["kv_transfer_params"] == PARAMS
    assert local == {"model": "fr-1", "prompt": PROMPT, "max_tokens": 4}
    (record,) = r.records
    assert record.status == 200 and record.endpoint == "decode" and record.attempts == 2
    leg = record.prefill
    assert (
        leg is not None
        and leg.status == 200
        and leg.fell_back
        and "reading the prefilled KV" in (leg.error or "")
    )
    assert r.idle()
