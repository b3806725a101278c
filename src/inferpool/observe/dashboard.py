"""The live dashboard: what the page and `inferpool top` draw, and the routes that serve it.

A `Tally` counts finished requests per model and per endpoint as decisions arrive; a
`History` samples every endpoint once a second into short time series (the last few
minutes), so the page can draw charts without any state of its own. `/api/dashboard`
is one snapshot; `/api/stream` pushes the same snapshot as server-sent events.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from inferpool.observe.decisions import DashboardConfig, DecisionLog, Tally, decision_view
from inferpool.observe.views import endpoint_view, objectives_view
from inferpool.state import Datastore, Endpoint

SERIES = ("queue", "running", "kv", "in_flight", "rps")  # per-endpoint time series, in sample order
STATIC_FILES = {
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
}


class History:
    """The last `window_s` of every endpoint's load, one point per `sample()`."""

    def __init__(self, datastore: Datastore, tally: Tally, config: DashboardConfig | None = None) -> None:
        self.datastore = datastore
        self.tally = tally
        self.config = config or DashboardConfig()
        self.times: deque[float] = deque(maxlen=self.config.points)
        self.series: dict[tuple[str, str], dict[str, deque[float | None]]] = {}
        self._last_routed: dict[tuple[str, str], int] = {}
        self._last_time: float | None = None
        self.rps: dict[tuple[str, str], float] = {}

    def sample(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        dt = now - self._last_time if self._last_time is not None else None
        self._last_time = now
        self.times.append(now)
        alive: set[tuple[str, str]] = set()
        for pool in self.datastore.pools():
            for e in self.datastore.endpoints(pool.key):
                key = (pool.key, e.name)
                alive.add(key)
                routed = self.tally.routed.get(key, 0)
                before = self._last_routed.get(key)
                self._last_routed[key] = routed
                rps = (routed - before) / dt if dt and before is not None and dt > 0 else 0.0
                self.rps[key] = rps
                values = (
                    e.metrics.waiting_queue_size,
                    e.metrics.running_requests,
                    round(e.metrics.kv_cache_usage, 4),
                    e.in_flight,
                    round(rps, 3),
                )
                series = self.series.get(key)
                if series is None:
                    # Endpoints that appear late are padded so every series lines up with `times`.
                    pad = len(self.times) - 1
                    series = self.series[key] = {
                        name: deque([None] * pad, maxlen=self.config.points) for name in SERIES
                    }
                for name, value in zip(SERIES, values, strict=True):
                    series[name].append(value)
        for key in set(self.series) - alive:
            del self.series[key]
            self._last_routed.pop(key, None)
            self.rps.pop(key, None)

    def of(self, pool: str, endpoint: str) -> dict[str, list[float | None]]:
        series = self.series.get((pool, endpoint))
        return {name: list(values) for name, values in series.items()} if series else {}

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.config.interval_s)


def endpoint_row(e: Endpoint, history: History, pool: str) -> dict[str, Any]:
    row = endpoint_view(e)
    row["rps"] = round(history.rps.get((pool, e.name), 0.0), 3)
    row["routed"] = history.tally.routed.get((pool, e.name), 0)
    row["series"] = history.of(pool, e.name)
    return row


def dashboard_view(
    datastore: Datastore, decisions: DecisionLog, history: History, now: float | None = None
) -> dict[str, Any]:
    """Everything the page shows, in one JSON object (documented in docs/dashboard.md)."""
    now = time.time() if now is None else now
    tally = decisions.tally
    config = history.config
    pools = []
    for pool in datastore.pools():
        declared = datastore.models(pool.key)
        names = {m.model_name for m in declared}
        models = [
            {
                "name": m.name,
                "model_name": m.model_name,
                "criticality": m.criticality.value if m.criticality else None,
                "targets": [{"name": t.name, "weight": t.weight} for t in m.targets],
                "declared": True,
                "stats": tally.model_stats(pool.key, m.model_name, now),
            }
            for m in declared
        ]
        for p, model in sorted(tally.models):
            if p == pool.key and model not in names:
                models.append(
                    {
                        "name": None,
                        "model_name": model,
                        "criticality": None,
                        "targets": [],
                        "declared": False,
                        "stats": tally.model_stats(pool.key, model, now),
                    }
                )
        endpoints = datastore.endpoints(pool.key)
        pools.append(
            {
                "key": pool.key,
                "namespace": pool.namespace,
                "name": pool.name,
                "ready_endpoints": sum(1 for e in endpoints if e.ready),
                "endpoints": [endpoint_row(e, history, pool.key) for e in endpoints],
                "models": models,
                "objectives": objectives_view(datastore, pool.key),
            }
        )
    recent = decisions.recent(config.decisions)
    return {
        "time": now,
        "interval_s": config.interval_s,
        "window_s": config.window_s,
        "series_times": list(history.times),
        "pools": pools,
        "decisions": [decision_view(r) for r in reversed(recent)],  # newest first
    }


def _asset(name: str) -> bytes:
    return resources.files("inferpool.observe").joinpath("static", name).read_bytes()


def add_dashboard(
    app: web.Application,
    datastore: Datastore,
    decisions: DecisionLog,
    config: DashboardConfig | None = None,
    guard: Callable[[web.Request], web.Response | None] | None = None,
) -> History:
    """Add /dashboard, its assets, /api/dashboard and /api/stream to `app`; sample while it runs.

    `guard` may refuse a request (return a response) before any dashboard data is sent.
    """
    history = History(datastore, decisions.tally, config)

    def refused(request: web.Request) -> web.Response | None:
        return guard(request) if guard is not None else None

    async def page(request: web.Request) -> web.StreamResponse:
        if (r := refused(request)) is not None:
            return r
        return web.Response(body=_asset("dashboard.html"), content_type="text/html", charset="utf-8")

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return web.Response(
            body=_asset(name),
            content_type=STATIC_FILES[name],
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def snapshot(request: web.Request) -> web.StreamResponse:
        if (r := refused(request)) is not None:
            return r
        body = orjson.dumps(dashboard_view(datastore, decisions, history))
        return web.Response(body=body, content_type="application/json")

    async def stream(request: web.Request) -> web.StreamResponse:
        if (r := refused(request)) is not None:
            return r
        try:
            count = int(request.query.get("count", "0"))  # stop after this many events (0: never)
        except ValueError:
            count = 0
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        await resp.write(f"retry: {int(history.config.interval_s * 2000)}\n\n".encode())
        sent = 0
        with contextlib.suppress(ConnectionResetError):
            while True:
                data = orjson.dumps(dashboard_view(datastore, decisions, history))
                await resp.write(b"event: snapshot\ndata: " + data + b"\n\n")
                sent += 1
                if count and sent >= count:
                    break
                await asyncio.sleep(history.config.interval_s)
        return resp

    async def sampler(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(history.run(), name="dashboard-sampler")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/{name}", asset)
    app.router.add_get("/api/dashboard", snapshot)
    app.router.add_get("/api/stream", stream)
    app.cleanup_ctx.append(sampler)
    return history
