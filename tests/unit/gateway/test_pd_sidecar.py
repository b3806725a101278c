"""`inferpool pd-sidecar` against small real upstreams: the allowlist, both legs, fallback, pass-through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from test_pd_forward import PARAMS, PROMPT, Server
from test_proxy import free_port

from inferpool.gateway.pd_sidecar import Allowlist, PdSidecar, SidecarConfig, split_host
from inferpool.gateway.prefill import PREFILL_REPORT_HEADER, parse_prefill_report
from inferpool.gateway.upstream import UPSTREAM_KEEPALIVE_S, VLLM_KEEPALIVE_S
from inferpool.request.disagg import PREFILLER_HEADER
from inferpool.state import Datastore, Endpoint, Pool


@dataclass
class HeaderServer(Server):
    """A model server that also keeps the headers of every request it was sent."""

    headers: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        return await super().handle(request)


@dataclass
class Rig:
    prefill: HeaderServer
    decode: HeaderServer
    sidecar: PdSidecar
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sidecar.port}"

    async def post(
        self, prefiller: str | None = None, path: str = "/v1/completions", **body: object
    ) -> aiohttp.ClientResponse:
        payload = {"model": "m", "prompt": PROMPT, "max_tokens": 4, **body}
        headers = {PREFILLER_HEADER: prefiller} if prefiller is not None else {}
        return await self.session.post(self.url + path, json=payload, headers=headers)

    @property
    def prefill_target(self) -> str:
        return f"127.0.0.1:{self.prefill.port}"


@pytest.fixture
async def rig() -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    made: list[Rig] = []

    async def make(
        prefill_answer: str = "ok",
        allow: tuple[str, ...] = ("127.0.0.1",),
        prefill_timeout_s: float = 5,
        decode_answer: str = "ok",
    ) -> Rig:
        prefill, decode = HeaderServer(prefill_answer), HeaderServer(decode_answer)
        await prefill.start()
        await decode.start()
        sidecar = PdSidecar(
            SidecarConfig(
                host="127.0.0.1",
                port=0,
                decoder_port=decode.port,
                allow=list(allow),
                prefill_timeout_s=prefill_timeout_s,
            )
        )
        await sidecar.start()
        r = Rig(prefill, decode, sidecar, aiohttp.ClientSession())
        made.append(r)
        return r

    yield make
    for r in made:
        await r.session.close()
        await r.sidecar.stop()
        for server in (r.prefill, r.decode):
            if server.runner is not None:
                await server.runner.cleanup()


async def test_prefill_leg_then_decode_leg_streamed_back(rig) -> None:  # type: ignore[no-untyped-def]
    r = await rig()
    resp = await r.post(r.prefill_target, stream=True, stream_options={"include_usage": True})
    text = await resp.text()
    assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
    assert text.count('"usage":{') == 1 and text.endswith("data: [DONE]\n\n")  # the decoder's usage only
    (prefill_leg,) = r.prefill.bodies
    assert prefill_leg["max_tokens"] == 1 and prefill_leg["stream"] is False
    assert "stream_options" not in prefill_leg and prefill_leg["kv_transfer_params"]["do_remote_decode"]
    (decode_leg,) = r.decode.bodies
    assert decode_leg["kv_transfer_params"] == PARAMS
    assert decode_leg["stream"] is True and decode_leg["max_tokens"] == 4 and decode_leg["prompt"] == PROMPT
    report = parse_prefill_report(resp.headers[PREFILL_REPORT_HEADER])
    assert report is not None and report.ok and report.status == 200 and report.duration_s is not None
    # neither leg carries the picker's header on to a model server
    assert all(PREFILLER_HEADER not in h for h in (*r.prefill.headers, *r.decode.headers))


async def test_unstreamed_answer_is_the_decoders(rig) -> None:  # type: ignore[no-untyped-def]
    r = await rig()
    resp = await r.post(r.prefill_target)
    answer = await resp.json()
    assert resp.status == 200 and answer["usage"]["completion_tokens"] == 1
    assert r.decode.bodies[0]["kv_transfer_params"] == PARAMS


@pytest.mark.parametrize("stream", [False, True])
async def test_cached_tokens_are_the_prefill_servers(rig, stream: bool) -> None:  # type: ignore[no-untyped-def]
    """As llm-d's sidecar: the decoder's usage (750 cached: it pulled the prompt's blocks) says
    what the prefill server had cached (128)."""
    r = await rig()
    resp = await r.post(r.prefill_target, stream=stream, stream_options={"include_usage": True})
    raw = await resp.read()
    if stream:
        [usage] = [
            orjson.loads(line[6:])["usage"]
            for line in raw.splitlines()
            if line.startswith(b"data: {") and b'"usage":{' in line
        ]
    else:
        usage = orjson.loads(raw)["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 128}
    assert usage["prompt_tokens"] == 750  # the rest of the usage is the decoder's, untouched


@pytest.mark.parametrize("failure", ["fail500", "notjson", "noparams"])
async def test_failed_prefill_falls_back_to_local_prefill(rig, failure: str) -> None:  # type: ignore[no-untyped-def]
    r = await rig(prefill_answer=failure)
    resp = await r.post(r.prefill_target, stream=True)
    text = await resp.text()
    assert resp.status == 200 and text.endswith("data: [DONE]\n\n")
    assert '"cached_tokens":750' in text  # the decoder prefilled itself: its usage as it sent it
    (decode_leg,) = r.decode.bodies
    assert "kv_transfer_params" not in decode_leg  # the client's body, unchanged
    assert decode_leg == {"model": "m", "prompt": PROMPT, "max_tokens": 4, "stream": True}
    report = parse_prefill_report(resp.headers[PREFILL_REPORT_HEADER])
    assert report is not None and not report.ok and report.error
    assert report.status == (500 if failure == "fail500" else 200)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_decoder_that_cannot_read_the_kv_serves_the_clients_request(rig, stream: bool) -> None:  # type: ignore[no-untyped-def]
    """vLLM's default kv_load_failure_policy "fail" answers 500 when the blocks cannot be read:
    the client's own request goes to the decoder again (local prefill), and the report says so."""
    r = await rig(decode_answer="failpull")
    resp = await r.post(r.prefill_target, stream=stream)
    raw = await resp.read()
    assert resp.status == 200
    # the decoder's own usage: no rewrite after a local prefill
    assert b'"cached_tokens": 750' in raw if not stream else b'"cached_tokens":750' in raw
    first, second = r.decode.bodies
    assert first["kv_transfer_params"] == PARAMS
    assert second == {
        "model": "m",
        "prompt": PROMPT,
        "max_tokens": 4,
        "stream": stream,
    }  # as the client sent it
    report = parse_prefill_report(resp.headers[PREFILL_REPORT_HEADER])
    assert report is not None and not report.ok and report.status == 200
    assert "reading the prefilled KV" in (report.error or "")


async def test_unreachable_prefill_falls_back(rig) -> None:  # type: ignore[no-untyped-def]
    r = await rig()
    resp = await r.post(f"127.0.0.1:{free_port()}")
    assert resp.status == 200
    report = parse_prefill_report(resp.headers[PREFILL_REPORT_HEADER])
    assert report is not None and not report.ok and report.status == 0
    assert "kv_transfer_params" not in r.decode.bodies[0]


async def test_a_client_gone_during_the_prefill_leg_gets_no_decode_leg(rig) -> None:  # type: ignore[no-untyped-def]
    r = await rig(prefill_answer="hang", prefill_timeout_s=1.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await r.post(r.prefill_target)
    await asyncio.sleep(1.5)  # past the prefill timeout: a handler still running would decode now
    assert len(r.prefill.bodies) == 1 and r.decode.bodies == []
    resp = await r.post(None)  # and the sidecar still serves
    assert resp.status == 200


async def test_a_target_outside_the_allowlist_is_refused(rig) -> None:  # type: ignore[no-untyped-def]
    r = await rig(allow=("10.0.0.9",))
    resp = await r.post(r.prefill_target)
    assert resp.status == 403 and resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert error["code"] == 403 and error["type"] == "PermissionDeniedError"
    assert r.prefill_target in error["message"] and "not allowed" in error["message"]
    assert not r.prefill.bodies and not r.decode.bodies


async def test_without_the_header_the_request_passes_through(rig) -> None:  # type: ignore[no-untyped-def]
    r = await rig()
    resp = await r.post(None, stream=True)
    assert resp.status == 200 and PREFILL_REPORT_HEADER not in resp.headers
    await resp.read()
    assert not r.prefill.bodies
    assert r.decode.bodies == [{"model": "m", "prompt": PROMPT, "max_tokens": 4, "stream": True}]


async def test_other_paths_pass_through_without_the_header(rig) -> None:  # type: ignore[no-untyped-def]
    r = await rig()
    resp = await r.post(r.prefill_target, path="/v1/embeddings")
    assert resp.status == 200 and not r.prefill.bodies
    assert PREFILLER_HEADER not in r.decode.headers[0]


async def test_decoder_down_is_a_json_502(rig) -> None:  # type: ignore[no-untyped-def]
    r = await rig()
    await r.decode.runner.cleanup()  # type: ignore[union-attr]
    r.decode.runner = None
    resp = await r.post(None)
    assert resp.status == 502
    assert (await resp.json())["error"]["type"] == "BadGatewayError"


async def test_pool_members_come_from_manifests_and_an_endpoints_file(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text(
        """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool}
spec:
  selector: {matchLabels: {app: m}}
  targetPorts: [{number: 8000}]
  endpointPickerRef: {name: epp, port: {number: 9002}}
"""
    )
    endpoints = tmp_path / "endpoints.yaml"
    endpoints.write_text(
        orjson.dumps(
            {"endpoints": [{"address": "10.0.0.7", "labels": {"app": "m", "llm-d.ai/role": "prefill"}}]}
        ).decode()
    )
    sidecar = PdSidecar(
        SidecarConfig(host="127.0.0.1", port=0, manifests=[tmp_path / "pool.yaml"], endpoints_file=endpoints)
    )
    await sidecar.start()
    try:
        assert sidecar.allowlist.allows("10.0.0.7:8000") and sidecar.allowlist.allows("10.0.0.7:9999")
        assert not sidecar.allowlist.allows("10.0.0.8:8000")
    finally:
        await sidecar.stop()


def test_allowlist_matches_hosts_as_llm_d_does() -> None:
    ds = Datastore()
    ds.upsert_pool(Pool("default", "pool", {"app": "m"}, [8000]))
    ds.upsert_pool(Pool("default", "other", {"app": "o"}, [8000]))
    ds.upsert_endpoint(Endpoint("prefill-pod-0", "10.0.0.7", 8000, "default/pool", {"app": "m"}))
    ds.upsert_endpoint(Endpoint("other-pod", "10.0.0.99", 8000, "default/other", {"app": "o"}))
    allow = Allowlist(["fd00::1", "prefill.example:8000"], ds, lambda: "default/pool")
    assert allow.allows("10.0.0.7:8000") and allow.allows("10.0.0.7:1234")  # any port of a member
    assert allow.allows("prefill-pod-0:8000")  # the pod's name, as llm-d allows it
    assert not allow.allows("10.0.0.99:8000")  # a pod of another pool
    assert allow.allows("[fd00::1]:8000") and allow.allows("prefill.example:8000")
    assert not allow.allows("prefill.example:8001") and not allow.allows("169.254.169.254:80")
    assert not allow.allows("") and not allow.allows(":8000")
    unsynced = Allowlist([], ds, lambda: None)
    assert not unsynced.allows("10.0.0.7:8000")
    assert split_host("[fd00::1]:80") == ("fd00::1", 80) and split_host("fd00::1") == ("fd00::1", None)


def test_config_refuses_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="no prefill target would be allowed"):
        SidecarConfig().check()
    with pytest.raises(ValueError, match="supported: nixlv2"):
        SidecarConfig(allow=["h"], connector="mooncake").check()
    with pytest.raises(ValueError, match="--endpoints needs -f"):
        SidecarConfig(allow=["h"], endpoints_file=Path("e.yaml")).check()


@dataclass
class CookieServer(HeaderServer):
    """A prefill server that sets a cookie on every (unstreamed) answer."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        answer = await super().handle(request)
        if not answer.prepared:
            answer.set_cookie("session", f"for-request-{len(self.headers)}")
        return answer


async def test_the_sidecar_keeps_no_cookie_a_prefill_server_set(rig) -> None:  # type: ignore[no-untyped-def]
    """A prefill target named by host (not IP) that sets a cookie: the next prefill leg, for
    another client, goes without it (a jar in the sidecar's session would send it)."""
    r = await rig(allow=("localhost",))
    cookies = CookieServer()
    await cookies.start()
    try:
        for _ in range(2):
            resp = await r.post(f"localhost:{cookies.port}")
            assert resp.status == 200
            await resp.read()
        assert len(cookies.headers) == 2
        assert [h.get("cookie") for h in cookies.headers] == [None, None]
    finally:
        if cookies.runner is not None:
            await cookies.runner.cleanup()


async def test_the_decoder_connections_go_idle_stale_before_vllms_do(rig) -> None:  # type: ignore[no-untyped-def]
    """The sidecar pools its connections to the decoder as the gateway does: dropped after
    UPSTREAM_KEEPALIVE_S idle, before vLLM (uvicorn) closes them at 5 s, so a request is never
    sent on one the server is closing (a POST is not resent: it would be a 502). aiohttp's default,
    15 s, was the sidecar's before."""
    r = await rig()
    assert UPSTREAM_KEEPALIVE_S < VLLM_KEEPALIVE_S
    session = r.sidecar._session
    assert session is not None and session.connector is not None
    assert session.connector._keepalive_timeout == UPSTREAM_KEEPALIVE_S
