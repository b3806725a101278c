"""The EPP's Prometheus port (9090): the gateway's metrics behind a bearer token.

In Kubernetes the token is checked with TokenReview + SubjectAccessReview (`kube_auth`), as
upstream does; standalone a static token is compared in constant time. `/healthz` stays open for probes.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Awaitable, Callable

from aiohttp import web

from inferpool.observe.admin import DecisionLog
from inferpool.observe.dashboard import add_dashboard
from inferpool.observe.metrics import CONTENT_TYPE, GatewayMetrics
from inferpool.state import Datastore

TokenCheck = Callable[[str], bool | Awaitable[bool]]  # async for TokenReview in Kubernetes


def static_token(expected: str) -> TokenCheck:
    def check(token: str) -> bool:
        return hmac.compare_digest(token.encode(), expected.encode())

    return check


def dashboard_guard(
    check: TokenCheck | None, static: str | None
) -> Callable[[web.Request], web.Response | None]:
    """Who may see the dashboard: anyone when /metrics is open; else the static token, as a bearer
    header or `?token=` (a browser cannot set headers). TokenReview mode has no static token: refused."""

    def guard(request: web.Request) -> web.Response | None:
        if check is None:
            return None
        if static is None:
            return web.Response(status=403, text="dashboard needs a static --metrics-token on this port\n")
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        offered = bearer.strip() if scheme.lower() == "bearer" else request.query.get("token", "")
        if offered and hmac.compare_digest(offered.encode(), static.encode()):
            return None
        return web.Response(
            status=401, text="token required (?token=...)\n", headers={"WWW-Authenticate": "Bearer"}
        )

    return guard


def metrics_app(
    metrics: GatewayMetrics,
    check: TokenCheck | None,
    ready: Callable[[], bool],
    dashboard: tuple[Datastore, DecisionLog, str | None] | None = None,
) -> web.Application:
    """`/metrics` (token required when `check` is set), `/healthz`, `/readyz`, and the dashboard
    when `dashboard` = (datastore, decision log, static token or None) is given."""

    async def metrics_page(request: web.Request) -> web.Response:
        if check is not None:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token:
                return web.Response(
                    status=401, text="bearer token required\n", headers={"WWW-Authenticate": "Bearer"}
                )
            allowed = check(token.strip())
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                return web.Response(status=403, text="token not allowed to get /metrics\n")
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ready\n") if ready() else web.Response(status=503, text="not ready\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if dashboard is not None:
        datastore, decisions, static = dashboard
        add_dashboard(app, datastore, decisions, guard=dashboard_guard(check, static))
    return app
