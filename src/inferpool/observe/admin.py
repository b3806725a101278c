"""The admin port of both data planes: Prometheus metrics, health and readiness, JSON views of
routing state and the live dashboard.

`inferpool serve`/`up` serve it on 9090 (docs/gateway.md), `inferpool epp` on its metrics
port (docs/epp.md); the pages are the same. One `AdminAuth` decides who may read them:
`/metrics` needs the bearer token when one is configured (a static token, or in Kubernetes a
TokenReview + SubjectAccessReview), the views (dashboard, `/api/*`) the static token as a
header or `?token=` (a browser cannot set headers); `/healthz` and `/readyz` stay open for probes.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from aiohttp import web

from inferpool.errors import InferenceError
from inferpool.observe.dashboard import add_dashboard
from inferpool.observe.decisions import DashboardConfig, DecisionLog, decision_view
from inferpool.observe.kvindex_view import KVIndexView
from inferpool.observe.metrics import CONTENT_TYPE, GatewayMetrics, merge_expositions
from inferpool.observe.views import state_view
from inferpool.state import Datastore

TokenReview = Callable[[str], Awaitable[bool]]  # Kubernetes: may this token's user get /metrics?
Readiness = Callable[[], str | None]  # None when ready, else why not


@dataclass(frozen=True)
class AdminAuth:
    """Who may read the admin port. Neither set: everything is open (local use)."""

    static_token: str | None = None
    review: TokenReview | None = None

    @property
    def enabled(self) -> bool:
        return self.static_token is not None or self.review is not None

    def _static_ok(self, offered: str) -> bool:
        expected = self.static_token
        return expected is not None and hmac.compare_digest(offered.encode(), expected.encode())

    async def metrics_refusal(self, request: web.Request) -> web.Response | None:
        """None when the request may read /metrics, else the 401/403 to answer."""
        if not self.enabled:
            return None
        offered = _bearer(request)
        if not offered:
            return _unauthorized("bearer token required")
        if self._static_ok(offered):
            return None
        if self.review is not None:
            if await self.review(offered):
                return None
            return web.Response(status=403, text="token not allowed to get /metrics\n")
        return _unauthorized("the metrics-reader bearer token is required")

    def view_refusal(self, request: web.Request) -> web.Response | None:
        """None when the request may read the dashboard and `/api/*` views, else the refusal."""
        if not self.enabled:
            return None
        if self.static_token is None:
            return web.Response(status=403, text="these views need a static --metrics-token on this port\n")
        offered = _bearer(request) or request.query.get("token", "")
        if offered and self._static_ok(offered):
            return None
        return _unauthorized("token required (bearer header or ?token=...)")


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _unauthorized(text: str) -> web.Response:
    return web.Response(
        status=401, text=text + "\n", headers={"WWW-Authenticate": 'Bearer realm="inferpool-metrics"'}
    )


def admin_app(
    datastore: Datastore,
    metrics: GatewayMetrics,
    decisions: DecisionLog,
    not_ready: Readiness,
    auth: AdminAuth | None = None,
    dashboard: DashboardConfig | None = None,
    peers: Callable[[], Awaitable[list[str]]] | None = None,
    kv_index: KVIndexView | None = None,
) -> web.Application:
    """/metrics, /healthz, /readyz (the plane's own rule: `not_ready()` says why not), /api/state,
    /api/decisions, /api/kv-index (when the profile scores from KV events) and the live
    dashboard (/dashboard, /api/dashboard, /api/stream).

    `peers` returns other processes' metrics text to add to this one's (several EPP workers).
    """
    auth = auth or AdminAuth()

    async def metrics_page(request: web.Request) -> web.Response:
        if (refusal := await auth.metrics_refusal(request)) is not None:
            return refusal
        body = metrics.exposition()
        if peers is not None:
            body = merge_expositions([body.decode(), *(t for t in await peers() if t)])
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        reason = not_ready()
        if reason is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")

    async def state(request: web.Request) -> web.Response:
        if (refusal := auth.view_refusal(request)) is not None:
            return refusal
        return web.Response(body=orjson.dumps(state_view(datastore)), content_type="application/json")

    async def recent(request: web.Request) -> web.Response:
        if (refusal := auth.view_refusal(request)) is not None:
            return refusal
        raw = request.query.get("limit", "0")
        try:
            limit = int(raw)
        except ValueError:
            limit = -1
        if limit < 0:
            error = InferenceError(
                400, f"limit={raw!r}: give a whole number >= 0 (0: all kept)", param="limit"
            )
            return web.Response(status=400, body=error.to_json(), content_type="application/json")
        items = [decision_view(r) for r in decisions.recent(limit or None)]
        return web.Response(body=orjson.dumps({"decisions": items}), content_type="application/json")

    async def kv_index_page(request: web.Request) -> web.Response:
        """GET: every event stream; POST an OpenAI request body: each endpoint's blocks of its prompt."""
        if (refusal := auth.view_refusal(request)) is not None:
            return refusal
        if kv_index is None:
            return web.Response(status=404, text="this profile does not read KV-cache events\n")
        if request.method == "GET":
            return web.Response(
                body=orjson.dumps({"streams": kv_index.streams()}), content_type="application/json"
            )
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return web.Response(status=400, text=f"request body is not JSON: {exc}\n")
        if not isinstance(body, dict) or not ("prompt" in body or "messages" in body):
            return web.Response(
                status=400, text="expected a completions or chat request body (prompt or messages)\n"
            )
        return web.Response(
            body=orjson.dumps({"endpoints": kv_index.prompt(body)}), content_type="application/json"
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/decisions", recent)
    app.router.add_get("/api/kv-index", kv_index_page)
    app.router.add_post("/api/kv-index", kv_index_page)
    add_dashboard(app, datastore, decisions, dashboard, guard=auth.view_refusal)
    return app
