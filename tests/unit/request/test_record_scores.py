"""A record keeps the scores it shows (the top few candidates), not the request's whole ranking:
the decision log holds the last 200 records, and at 1,000 endpoints a ranking is ≈140 KB (28 MB
held before 2026-12-07; 0.5 MB now, docs/benchmarks.md)."""

from __future__ import annotations

import time

import orjson

from inferpool.records import HttpFacts, LazyScores
from inferpool.request.core import Core, CoreConfig
from inferpool.scheduling.types import Ranking
from inferpool.state import Criticality, Endpoint, EndpointMetrics, ModelRoute, Pool

POOL = "default/pool"
BODY = orjson.dumps({"model": "base", "prompt": "Say something about pizza.", "max_tokens": 16})


def _core(endpoints: int) -> Core:
    core = Core(CoreConfig(scheduler="default"))
    store = core.datastore
    store.upsert_pool(Pool("default", "pool", {"app": "vllm"}, [8000]))
    store.upsert_model(ModelRoute("default", "base", "base", "pool", Criticality.CRITICAL))
    for i in range(endpoints):
        # fresh for the test
        metrics = EndpointMetrics(waiting_queue_size=i % 5, scraped_at=time.monotonic() + 3600)
        endpoint = Endpoint(f"pod{i}", f"10.0.{i // 250}.{i % 250}", 8000, POOL, metrics=metrics)
        store.upsert_endpoint(endpoint)
    return core


def _kept_ranking(scores: object) -> Ranking:
    assert isinstance(scores, LazyScores)
    build = scores._build
    assert build is not None
    ranking = build.func.__self__  # type: ignore[attr-defined]
    assert isinstance(ranking, Ranking)
    return ranking


def test_a_record_keeps_only_the_top_of_a_large_ranking() -> None:
    core = _core(100)
    routed = core.director.route(POOL, "/v1/completions", {}, BODY, http=HttpFacts("POST", "/v1/completions"))
    ranked = routed.result.ranked
    assert isinstance(ranked, Ranking) and len(ranked) == 100
    record = routed.finish(200)
    count = core.director.config.top_scores
    assert len(_kept_ranking(record.scores)) == count  # not 100
    assert tuple(record.scores) == ranked.candidate_scores(count)


def test_a_small_ranking_is_kept_whole() -> None:
    core = _core(2)
    routed = core.director.route(POOL, "/v1/completions", {}, BODY, http=HttpFacts("POST", "/v1/completions"))
    ranked = routed.result.ranked
    record = routed.finish(200)
    assert _kept_ranking(record.scores) is ranked  # (copying its top would cost more than it saves)
    assert tuple(record.scores) == ranked.candidate_scores(core.director.config.top_scores)
