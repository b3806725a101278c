"""The dashboard's data: tallies, sampled series, and the routes on the admin app."""

from __future__ import annotations

from dataclasses import replace

import msgspec
import orjson
from aiohttp.test_utils import TestClient, TestServer

from inferpool.observe.admin import admin_app
from inferpool.observe.dashboard import History, dashboard_view
from inferpool.observe.decisions import DashboardConfig, DecisionLog, Tally, decision_view, percentile
from inferpool.observe.metrics import GatewayMetrics
from inferpool.records import CandidateScore, HttpFacts, RequestRecord
from inferpool.state import Criticality, Datastore, Endpoint, ModelRoute, Pool, TargetModel
from inferpool.state.objects import Objective, PoolBinding

POOL = "default/pool"


def datastore() -> Datastore:
    ds = Datastore()
    ds.upsert_pool(Pool("default", "pool", {"app": "x"}, [8000]))
    ds.upsert_model(
        ModelRoute(
            "default",
            "food",
            "food-review",
            "pool",
            Criticality.STANDARD,
            [TargetModel("food-review-1", 100)],
        )
    )
    for i in range(2):
        ds.upsert_endpoint(Endpoint(f"pod-{i}", "127.0.0.1", 8000 + i, POOL))
    return ds


def record(
    rid: str,
    picked: str | None,
    status: int = 200,
    ttft: float | None = 0.05,
    ts: float = 100.0,
    model: str = "food-review",
    target: str = "food-review-1",
    pool: str = POOL,
    shed_reason: str | None = None,
) -> RequestRecord:
    """A finished request's record, ending at wall time `ts`."""
    return RequestRecord(
        request_id=rid,
        pool=pool,
        model=model,
        target_model=target,
        endpoint=picked,
        status=status,
        scores=(CandidateScore("pod-0", "127.0.0.1:8000", 2.0, {"queue-scorer": 1.0}),) if picked else (),
        ttft_s=ttft,
        started_at=ts,
        e2e_s=0.0,
        filtered_out={"pod-1": "lora-affinity-filter"} if picked else {},
        error=None if picked else "shed",
        shed_reason=shed_reason,
    )


def decision(
    rid: str,
    picked: str | None,
    status: int = 200,
    ttft: float | None = 0.05,
    ts: float = 100.0,
    shed_reason: str | None = None,
) -> RequestRecord:
    return record(rid, picked, status, ttft, ts, shed_reason=shed_reason)


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0


def test_tally_counts_shed_errors_rate_and_ttft() -> None:
    tally = Tally(DashboardConfig(rate_window_s=10.0, window_s=60.0))
    tally.add(record("a", "pod-0", 200, 9.0, ts=10.0, model="m"))  # older than the TTFT window: dropped
    for i in range(10):
        tally.add(record(f"b{i}", "pod-0", 200, 0.010 * (i + 1), ts=95.0 + i * 0.5, model="m"))
    tally.add(record("c", None, 429, None, ts=99.0, model="m", shed_reason="queue-full"))
    tally.add(record("d", "pod-1", 503, None, ts=99.5, model="m"))
    # waited its flow-control TTL: a 503, but flow control's refusal, counted as the 429 above is
    tally.add(record("e", None, 503, None, ts=99.6, model="m", shed_reason="queue-ttl-expired"))
    tally.add(record("f", "pod-1", 429, None, ts=99.7, model="m"))  # the model server's own 429
    tally.add(record("g", None, 429, None, ts=99.8, model="m"))  # a tenant's rate limit: shed
    # every replica down: an outage, not shedding
    tally.add(record("h", None, 503, None, ts=99.9, model="m", shed_reason="no-ready-endpoints"))
    stats = tally.model_stats(POOL, "m", now=100.0)
    assert stats["requests"] == 17
    assert stats["shed"] == 3 and stats["errors"] == 3
    assert stats["rate_rps"] == 1.6  # 16 finished in the last 10 s
    assert stats["ttft_p50_ms"] == 50.0 and stats["ttft_p99_ms"] == 100.0
    assert tally.routed == {(POOL, "pod-0"): 11, (POOL, "pod-1"): 2}
    assert tally.model_stats(POOL, "other", now=100.0)["requests"] == 0


def test_tally_stays_bounded_when_nobody_reads_it() -> None:
    """A gateway whose dashboard nobody opens: a day of requests keeps only the rate window."""
    tally = Tally(DashboardConfig(rate_window_s=10.0, ttft_samples=100))
    for i in range(50_000):
        tally.add(record(f"r{i}", "pod-0", 200, 0.01, ts=i * 1.0, model="m"))
    kept = tally.models[(POOL, "m")]
    assert len(kept.finished) <= 11 and len(kept.ttft) == 100
    assert tally.model_stats(POOL, "m", now=50_000.0)["requests"] == 50_000


def test_history_rates_padding_and_removal() -> None:
    ds = datastore()
    tally = Tally()
    history = History(ds, tally, DashboardConfig(interval_s=1.0, window_s=5.0))
    history.sample(now=0.0)
    for _ in range(4):
        tally.add(record("r", "pod-0", 200, None, ts=0.5, model="m"))
    ep = ds.endpoint(POOL, "pod-1")
    assert ep is not None
    ep.metrics = replace(ep.metrics, waiting_queue_size=3, kv_cache_usage=0.25)
    ep.in_flight = 2
    history.sample(now=2.0)
    s0, s1 = history.of(POOL, "pod-0"), history.of(POOL, "pod-1")
    assert s0["rps"] == [0.0, 2.0]  # 4 requests over 2 s
    assert s1["queue"] == [0, 3] and s1["kv"] == [0.0, 0.25] and s1["in_flight"] == [0, 2]
    ds.upsert_endpoint(Endpoint("pod-2", "127.0.0.1", 8002, POOL))  # appears late: padded to line up
    history.sample(now=3.0)
    assert history.of(POOL, "pod-2")["queue"] == [None, None, 0]
    for t in range(4, 12):
        history.sample(now=float(t))
    assert len(history.times) == 5 and len(history.of(POOL, "pod-0")["queue"]) == 5
    ds.remove_endpoint(POOL, "pod-2")
    history.sample(now=12.0)
    assert history.of(POOL, "pod-2") == {}


def test_dashboard_view_models_and_decisions_newest_first() -> None:
    ds = datastore()
    log = DecisionLog()
    log.add(decision("r1", "pod-0", ts=99.0))
    log.add(decision("r2", None, status=429, ttft=None, ts=99.5, shed_reason="saturated-sheddable"))
    log.add(record("r3", "pod-1", ts=99.8, model="base", target="base"))  # a model no InferenceModel declares
    history = History(ds, log.tally)
    history.sample(now=99.0)
    view = dashboard_view(ds, log, history, now=100.0)
    assert [d["request_id"] for d in view["decisions"]] == ["r3", "r2", "r1"]
    assert [d["shed_reason"] for d in view["decisions"]] == [None, "saturated-sheddable", None]
    assert view["decisions"][2]["filtered_out"] == {"pod-1": "lora-affinity-filter"}
    (pool,) = view["pools"]
    assert [e["name"] for e in pool["endpoints"]] == ["pod-0", "pod-1"]
    assert set(pool["endpoints"][0]["series"]) == {"queue", "running", "kv", "in_flight", "rps"}
    food, base = pool["models"]
    assert food["model_name"] == "food-review" and food["criticality"] == "Standard" and food["declared"]
    assert food["targets"] == [{"name": "food-review-1", "weight": 100}]
    assert food["stats"]["requests"] == 2 and food["stats"]["shed"] == 1
    assert base["model_name"] == "base" and not base["declared"] and base["stats"]["requests"] == 1
    assert pool["objectives"] == []


def test_dashboard_view_lists_each_pools_objectives_highest_priority_first() -> None:
    """As /api/state does: what a request may name there, and an objective of another pool not."""
    ds = datastore()
    ds.upsert_pool(Pool("default", "other", {"app": "y"}, [8000]))
    ds.upsert_objective(Objective("default", "batch", PoolBinding(("pool",)), priority=-1))
    ds.upsert_objective(Objective("default", "interactive", PoolBinding(("pool",)), priority=10))
    ds.upsert_objective(Objective("default", "elsewhere", PoolBinding(("other",)), priority=5))
    log = DecisionLog()
    view = dashboard_view(ds, log, History(ds, log.tally), now=100.0)
    objectives = {p["key"]: p["objectives"] for p in view["pools"]}
    assert objectives[POOL] == [{"name": "interactive", "priority": 10}, {"name": "batch", "priority": -1}]
    assert objectives["default/other"] == [{"name": "elsewhere", "priority": 5}]


async def client_for(ds: Datastore, log: DecisionLog, config: DashboardConfig) -> TestClient:
    app = admin_app(ds, GatewayMetrics(ds), log, lambda: None, dashboard=config)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_routes_page_assets_snapshot_and_stream() -> None:
    ds = datastore()
    log = DecisionLog()
    log.add(decision("r1", "pod-0"))
    client = await client_for(ds, log, DashboardConfig(interval_s=0.05))
    try:
        page = await client.get("/dashboard")
        assert page.status == 200 and page.content_type == "text/html"
        html = await page.text()
        assert "/dashboard/dashboard.js" in html and "/dashboard/dashboard.css" in html
        assert "http://" not in html and "https://" not in html  # nothing fetched from outside
        js = await client.get("/dashboard/dashboard.js")
        assert js.status == 200 and js.content_type == "application/javascript"
        assert "EventSource" in await js.text()
        assert (await client.get("/dashboard/dashboard.css")).status == 200
        assert (await client.get("/dashboard/secrets.txt")).status == 404

        snap = await (await client.get("/api/dashboard")).json()
        assert snap["pools"][0]["key"] == POOL
        assert snap["decisions"][0]["request_id"] == "r1"
        assert snap["decisions"][0]["ranked"][0]["scores"] == {"queue-scorer": 1.0}

        resp = await client.get("/api/stream", params={"count": "3"})
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
        events = [e for e in (await resp.text()).split("\n\n") if e.startswith("event: snapshot")]
        assert len(events) == 3
        frames = [orjson.loads(e.split("data: ", 1)[1]) for e in events]
        assert frames[0]["time"] < frames[2]["time"]
        # The sampler runs with the app: series grow while it serves.
        assert len(frames[2]["series_times"]) >= 1

        # Existing endpoints keep working beside the dashboard.
        assert (await client.get("/api/state")).status == 200
        decisions = await (await client.get("/api/decisions")).json()
        assert decisions["decisions"][0]["filtered_out"] == {"pod-1": "lora-affinity-filter"}
        one = await (await client.get("/api/decisions", params={"limit": "1"})).json()
        assert len(one["decisions"]) == 1
        for bad in ("-1", "abc"):  # not "all but the oldest", nor silently all
            resp = await client.get("/api/decisions", params={"limit": bad})
            assert resp.status == 400 and (await resp.json())["error"]["param"] == "limit"
    finally:
        await client.close()


def test_decision_view_keeps_scores_and_filter_reasons() -> None:
    record = RequestRecord(
        request_id="r9", pool=POOL, model="food-review", target_model="food-review-1", endpoint="pod-0",
        hostport="127.0.0.1:8000", status=200, error=None, priority=0, stream=False, ttft_s=0.02, e2e_s=0.1,
        prompt_tokens=5, completion_tokens=7, cached_tokens=None, prompt_tokens_estimate=5, request_bytes=10,
        response_bytes=20, profile="default", scores=(CandidateScore("pod-0", "127.0.0.1:8000", 2.0, {"queue-scorer": 1.0}),),
        filtered_out={"pod-1": "lora-affinity-filter"}, shed_reason=None, decision_s=0.001, started_at=1.0, attempts=1,
    )  # fmt: skip
    d = decision_view(record)
    assert d["picked"] == "pod-0" and d["target_model"] == "food-review-1" and d["attempts"] == 1
    assert d["ranked"] == [
        {"endpoint": "pod-0", "hostport": "127.0.0.1:8000", "total": 2.0, "scores": {"queue-scorer": 1.0}}
    ]
    assert d["filtered_out"] == {"pod-1": "lora-affinity-filter"} and d["error"] is None
    assert d["request"] is None  # no HTTP facts on this record
    health = msgspec.structs.replace(
        record, model="", target_model="", scores=(), http=HttpFacts("GET", "/health")
    )
    assert decision_view(health)["request"] == "GET /health"
    log = DecisionLog()
    log.add(record)
    assert log.tally.routed == {(POOL, "pod-0"): 1}
