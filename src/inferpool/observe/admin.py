"""The admin port: Prometheus metrics, health and readiness, and JSON views of routing state.

`/api/state` and `/api/decisions` are documented in docs/gateway.md and kept stable; the
dashboard (`/dashboard`, `/api/dashboard`, `/api/stream`) is in docs/dashboard.md.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from aiohttp import web

from inferpool.observe.dashboard import DashboardConfig, Tally, add_dashboard
from inferpool.observe.metrics import CONTENT_TYPE, GatewayMetrics
from inferpool.observe.views import endpoint_view
from inferpool.request.director import RequestRecord
from inferpool.state import Datastore


@dataclass
class Decision:
    """One routing decision: the candidates the scheduler ranked, with their scores."""

    request_id: str
    pool: str
    model: str | None
    target_model: str | None
    picked: str | None  # endpoint name that served (or was last tried)
    status: int
    ranked: list[dict[str, Any]] = field(default_factory=list)  # [{endpoint, hostport, total, scores}]
    profile: str | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    attempts: int = 0
    ts: float = field(default_factory=time.time)
    filtered_out: dict[str, str] = field(default_factory=dict)  # endpoint name -> filter that removed it
    error: str | None = None  # why the request failed or was refused


def decision_from_record(record: RequestRecord) -> Decision:
    """The decision-log entry for one request record (any data plane: gateway or EPP)."""
    return Decision(
        request_id=record.request_id,
        pool=record.pool,
        model=record.model,
        target_model=record.target_model,
        picked=record.endpoint,
        status=record.status,
        ranked=[
            {"endpoint": s.endpoint, "hostport": s.hostport, "total": s.total, "scores": s.scores}
            for s in record.scores
        ],
        profile=record.profile,
        ttft_s=record.ttft_s,
        e2e_s=record.e2e_s,
        attempts=record.attempts,
        filtered_out=dict(record.filtered_out),
        error=record.error,
    )


class DecisionLog:
    """The last N decisions, newest last, plus running per-model and per-endpoint counts."""

    def __init__(self, keep: int = 200) -> None:
        self._items: deque[Decision] = deque(maxlen=keep)
        self.tally = Tally()

    def add(self, decision: Decision) -> None:
        self._items.append(decision)
        d = decision
        self.tally.add(d.pool, d.model, d.picked, d.status, d.ttft_s, d.ts)

    def recent(self, limit: int | None = None) -> list[Decision]:
        items = list(self._items)
        return items[-limit:] if limit else items


def state_view(datastore: Datastore) -> dict[str, Any]:
    pools = []
    for pool in datastore.pools():
        endpoints = datastore.endpoints(pool.key)
        pools.append(
            {
                "key": pool.key,
                "namespace": pool.namespace,
                "name": pool.name,
                "selector": pool.selector,
                "target_ports": pool.target_ports,
                "ready_endpoints": sum(1 for e in endpoints if e.ready),
                "endpoints": [endpoint_view(e) for e in endpoints],
                "models": [
                    {
                        "name": m.name,
                        "model_name": m.model_name,
                        "criticality": m.criticality.value if m.criticality else None,
                        "targets": [{"name": t.name, "weight": t.weight} for t in m.targets],
                    }
                    for m in datastore.models(pool.key)
                ],
            }
        )
    return {"time": time.time(), "pools": pools}


def admin_app(
    datastore: Datastore,
    metrics: GatewayMetrics,
    decisions: DecisionLog,
    ready: Callable[[], bool] | None = None,
    dashboard: DashboardConfig | None = None,
) -> web.Application:
    """/metrics, /healthz, /readyz (every pool has a ready endpoint), /api/state, /api/decisions,
    and the live dashboard (/dashboard, /api/dashboard, /api/stream)."""

    def is_ready() -> bool:
        if ready is not None and not ready():
            return False
        return all(datastore.ready_endpoints(p.key) for p in datastore.pools())

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if is_ready():
            return web.Response(text="ok")
        return web.Response(status=503, text="not ready: a pool has no ready endpoint")

    async def state(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(state_view(datastore)), content_type="application/json")

    async def recent(request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "0")) or None
        except ValueError:
            limit = None
        items = [asdict(d) for d in decisions.recent(limit)]
        return web.Response(body=orjson.dumps({"decisions": items}), content_type="application/json")

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/decisions", recent)
    add_dashboard(app, datastore, decisions, dashboard)
    return app
