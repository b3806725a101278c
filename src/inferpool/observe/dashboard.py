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
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, Protocol

import orjson
from aiohttp import web

from inferpool.observe.views import endpoint_view
from inferpool.state import Datastore, Endpoint

SERIES = ("queue", "running", "kv", "in_flight", "rps")  # per-endpoint time series, in sample order
STATIC_FILES = {
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
}


@dataclass(frozen=True)
class DashboardConfig:
    interval_s: float = 1.0  # sampling and push period
    window_s: float = 300.0  # how far back the time series and TTFT percentiles reach
    rate_window_s: float = 10.0  # request rate is averaged over this
    decisions: int = 50  # decisions sent with each snapshot
    ttft_samples: int = 5000  # per model, newest kept

    @property
    def points(self) -> int:
        return max(2, int(self.window_s / self.interval_s))


@dataclass
class ModelTally:
    requests: int = 0
    shed: int = 0  # refused by admission (429)
    errors: int = 0  # other failures (>= 400)
    finished: deque[float] = field(default_factory=deque)  # wall times, for the rate
    ttft: deque[tuple[float, float]] = field(default_factory=deque)  # (wall time, seconds)


class Tally:
    """Per-(pool, model) request counts and TTFT samples; per-endpoint routed counts."""

    def __init__(self, config: DashboardConfig | None = None) -> None:
        self.config = config or DashboardConfig()
        self.models: dict[tuple[str, str], ModelTally] = {}
        self.routed: dict[tuple[str, str], int] = {}  # (pool, endpoint name) -> requests dispatched

    def add(
        self,
        pool: str,
        model: str | None,
        picked: str | None,
        status: int,
        ttft_s: float | None,
        ts: float,
    ) -> None:
        m = self.models.setdefault((pool, model or ""), ModelTally())
        m.requests += 1
        if picked is None and status == 429:
            m.shed += 1
        elif status >= 400:
            m.errors += 1
        m.finished.append(ts)
        if ttft_s is not None:
            m.ttft.append((ts, ttft_s))
            if len(m.ttft) > self.config.ttft_samples:
                m.ttft.popleft()
        if picked is not None:
            key = (pool, picked)
            self.routed[key] = self.routed.get(key, 0) + 1

    def model_stats(self, pool: str, model: str, now: float) -> dict[str, Any]:
        m = self.models.get((pool, model))
        if m is None:
            return {
                "requests": 0,
                "rate_rps": 0.0,
                "ttft_p50_ms": None,
                "ttft_p99_ms": None,
                "shed": 0,
                "errors": 0,
            }
        self._trim(m, now)
        recent = sum(1 for t in m.finished if t >= now - self.config.rate_window_s)
        ttfts = sorted(s for _, s in m.ttft)
        return {
            "requests": m.requests,
            "rate_rps": round(recent / self.config.rate_window_s, 3),
            "ttft_p50_ms": _ms(percentile(ttfts, 0.50)),
            "ttft_p99_ms": _ms(percentile(ttfts, 0.99)),
            "shed": m.shed,
            "errors": m.errors,
        }

    def _trim(self, m: ModelTally, now: float) -> None:
        while m.finished and m.finished[0] < now - self.config.rate_window_s:
            m.finished.popleft()
        while m.ttft and m.ttft[0][0] < now - self.config.window_s:
            m.ttft.popleft()


class DecisionSource(Protocol):
    """What the dashboard reads of the decision log (admin.DecisionLog, which builds on this module)."""

    @property
    def tally(self) -> Tally: ...

    def recent(self, limit: int | None = None) -> Sequence[Any]: ...


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, int(q * len(sorted_values) + 0.999999) - 1))
    return sorted_values[rank]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


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
    datastore: Datastore, decisions: DecisionSource, history: History, now: float | None = None
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
            }
        )
    recent = decisions.recent(config.decisions)
    return {
        "time": now,
        "interval_s": config.interval_s,
        "window_s": config.window_s,
        "series_times": list(history.times),
        "pools": pools,
        "decisions": [asdict(d) for d in reversed(recent)],  # newest first
    }


def _asset(name: str) -> bytes:
    return resources.files("inferpool.observe").joinpath("static", name).read_bytes()


def add_dashboard(
    app: web.Application,
    datastore: Datastore,
    decisions: DecisionSource,
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
