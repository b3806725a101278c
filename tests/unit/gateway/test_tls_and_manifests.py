"""HTTPS listeners from a TLS Secret, and Gateway/HTTPRoute manifests -> routing values."""

from __future__ import annotations

import ssl

import aiohttp

from inferpool.api import load_text
from inferpool.extproc.certs import self_signed
from inferpool.gateway.routing import RequestFacts, RouteTable, TLSConfig
from inferpool.gateway.runtime import gateway_objects
from inferpool.gateway.server import ssl_context

MANIFESTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: x
  listeners:
  - {name: http, protocol: HTTP, port: 8080}
  - name: https
    protocol: HTTPS
    port: 8443
    hostname: "*.example.com"
    tls: {certificateRefs: [{name: cert}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw, sectionName: https}]
  rules:
  - matches: [{path: {type: Exact, value: /v1/completions}, headers: [{name: x-t, value: a}]}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-s, value: "1"}]}}]
    backendRefs: [{name: pool, group: inference.networking.x-k8s.io, kind: InferencePool, weight: 3}]
    timeouts: {request: 30s, backendRequest: 10s}
"""


def secret(cert: bytes, key: bytes) -> str:
    import base64

    return f"""
---
apiVersion: v1
kind: Secret
metadata: {{name: cert}}
type: kubernetes.io/tls
data:
  tls.crt: {base64.b64encode(cert).decode()}
  tls.key: {base64.b64encode(key).decode()}
"""


def test_manifests_become_listeners_and_routes() -> None:
    key, cert = self_signed(["localhost"])
    ms = load_text(MANIFESTS + secret(cert, key), "gw.yaml")
    assert ms.ok, ms.errors
    listeners, routes = gateway_objects(ms)
    assert [(lis.name, lis.port, lis.protocol) for lis in listeners] == [
        ("http", 8080, "HTTP"),
        ("https", 8443, "HTTPS"),
    ]
    assert listeners[1].tls is not None and listeners[1].tls.cert_pem.startswith(b"-----BEGIN CERTIFICATE")
    rule = routes[0].rules[0]
    assert rule.timeout_s == 30 and rule.backend_timeout_s == 10
    assert rule.backends[0].kind == "InferencePool" and rule.backends[0].weight == 3
    assert rule.request_headers is not None and rule.request_headers.set == (("x-s", "1"),)
    table = RouteTable(listeners, routes)
    hit = RequestFacts("a.example.com", "POST", "/v1/completions", {"x-t": "a"})
    assert table.match("default/gw", "https", hit) is not None
    assert table.match("default/gw", "http", hit) is None  # sectionName attaches to https only
    assert (
        table.match("default/gw", "https", RequestFacts("other.org", "POST", "/v1/completions", {"x-t": "a"}))
        is None
    )


async def test_https_listener_serves_with_the_secret_certificate() -> None:
    from aiohttp import web

    key, cert = self_signed(["localhost", "127.0.0.1"])
    ctx = ssl_context(TLSConfig(cert, key))

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="tls ok")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client_ctx = ssl.create_default_context(cadata=cert.decode())
    try:
        async with aiohttp.ClientSession() as s, s.get(f"https://localhost:{port}/", ssl=client_ctx) as resp:
            assert await resp.text() == "tls ok"
    finally:
        await runner.cleanup()
