"""Hypothesis-driven bad input: request bodies at the gateway, documents at the manifest validator."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferpool.admission import AdmissionConfig
from inferpool.api.loader import load_text
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
from inferpool.request.core import Core, CoreConfig
from inferpool.state import Datastore, Endpoint, ModelRoute, Pool

from .conftest import free_port

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "model": json_values | st.just("tiny"),
        "prompt": json_values,
        "messages": json_values,
        "max_tokens": json_values,
        "stream": json_values,
        "temperature": json_values,
        "n": json_values,
    },
)


def encode(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return b"{}"


bodies = st.one_of(
    st.binary(max_size=300),  # empty, invalid UTF-8, anything
    fields.map(encode),
    fields.map(encode).map(lambda b: b[: max(0, len(b) // 2)]),  # truncated
    st.integers(min_value=1, max_value=400).map(
        lambda d: b'{"model": "tiny", "prompt": ' + b"[" * d + b"]" * d + b"}"
    ),
    json_values.map(encode),
)


class Background:
    """A gateway and a stand-in model server on a loop in another thread (hypothesis tests are sync)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.url = self.run(self._start())

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def _start(self) -> str:
        async def upstream(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response(
                {"choices": [{"text": "ok"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
            )

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", upstream)
        self.upstream = web.AppRunner(app)
        await self.upstream.setup()
        port = free_port()
        await web.TCPSite(self.upstream, "127.0.0.1", port).start()
        ds = Datastore()
        ds.upsert_pool(Pool("default", "pool", {"app": "m"}, [8000]))
        ds.upsert_model(ModelRoute("default", "tiny", "tiny", "pool"))
        ds.upsert_endpoint(Endpoint("ep0", "127.0.0.1", port, "default/pool", {"app": "m"}))
        core = Core(
            CoreConfig(scheduler="default", admission=AdmissionConfig(enabled=False), scrape=None),
            datastore=ds,
        )
        rule = RouteRule(
            (RouteMatch(PathMatch("PathPrefix", "/")),), (BackendRef("InferencePool", "pool", "default"),)
        )
        route = HTTPRoute("default", "r", (ParentRef("gw", "default"),), (), (rule,))
        config = ServeConfig(admin_port=None, proxy=ProxyConfig(max_body_bytes=64 * 1024))
        self.gateway = GatewayServer(
            core,
            [Listener("default/gw", "http", free_port())],
            [route],
            config,
            access_log=AccessLog(io.StringIO()),
        )
        await self.gateway.start()
        self.session = aiohttp.ClientSession()
        return self.gateway.bound[0].url

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        async with self.session.post(
            self.url + path, data=body, headers={"Content-Type": "application/json"}
        ) as r:
            return r.status, await r.read()

    def close(self) -> None:
        async def stop() -> None:
            await self.session.close()
            await self.gateway.stop(drain=False)
            await self.upstream.cleanup()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def background() -> Iterator[Background]:
    bg = Background()
    yield bg
    bg.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, path=st.sampled_from(["/v1/completions", "/v1/chat/completions"]))
def test_gateway_never_answers_5xx_to_bad_bodies(background: Background, body: bytes, path: str) -> None:
    status, answer = background.run(background.post(path, body))
    assert status < 500, (status, body[:200], answer[:300])
    if status >= 400:
        error = orjson.loads(answer)["error"]
        assert error["code"] == status and isinstance(error["message"], str) and error["message"]
    assert background.gateway.proxy.in_flight == 0


yaml_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
KINDS = [
    ("inference.networking.x-k8s.io/v1alpha2", "InferencePool"),
    ("inference.networking.x-k8s.io/v1alpha2", "InferenceModel"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("inferpool.io/v1alpha1", "GuardPolicy"),
]


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    name=yaml_values,
    spec=yaml_values,
    raw=st.text(max_size=200),
)
def test_validator_never_throws(kind: tuple[str, str], name: object, spec: object, raw: str) -> None:
    doc = {"apiVersion": kind[0], "kind": kind[1], "metadata": {"name": name}, "spec": spec}
    for text in (yaml.safe_dump(doc), raw):
        result = load_text(text)
        assert isinstance(result.errors, list)
