"""The Director over the real scheduler (inferpool.scheduling), not the test double."""

from __future__ import annotations

import random
import time

import orjson
import pytest

from inferpool.admission import Admission
from inferpool.errors import InferenceError
from inferpool.request import Director
from inferpool.scheduling import load_scheduler
from inferpool.state import Criticality, Datastore, Endpoint, EndpointMetrics, ModelRoute, Pool

POOL = "default/p"


def _store(*queues: int) -> Datastore:
    store = Datastore()
    store.upsert_pool(Pool("default", "p", {}, [8000]))
    store.upsert_model(ModelRoute("default", "std", "std", "p", Criticality.STANDARD))
    for i, queue in enumerate(queues):
        metrics = EndpointMetrics(waiting_queue_size=queue, kv_cache_usage=0.1, scraped_at=time.monotonic())
        store.upsert_endpoint(Endpoint(f"pod{i}", f"10.0.0.{i + 1}", 8000, POOL, metrics=metrics))
    return store


def _director(store: Datastore, profile: str) -> Director:
    scheduler = load_scheduler(profile)
    return Director(store, lambda pool: scheduler, Admission(), rng=random.Random(1))


def test_default_profile_routes_and_prefers_the_cached_prefix() -> None:
    store = _store(0, 0, 0)
    director = _director(store, "default")
    prompt = "You are a helpful assistant. " * 40
    body = orjson.dumps({"model": "std", "prompt": prompt + "first question"})
    first = director.route(POOL, "/v1/completions", {}, body)
    assert len(first.candidates) == 3
    chosen = first.candidates[0]
    first.dispatched(chosen)  # on_routed records the prefix on the chosen endpoint
    first.finish(200)
    again = director.route(
        POOL, "/v1/completions", {}, orjson.dumps({"model": "std", "prompt": prompt + "second"})
    )
    assert again.candidates[0] is chosen
    assert first.result.ranked[0].scores["prefix-cache-scorer"] == 0.0
    assert again.result.ranked[0].scores["prefix-cache-scorer"] > 0.5
    assert chosen.in_flight == 0


def test_legacy_profile_shed_becomes_429() -> None:
    store = _store(7, 7)  # over the v0.3 limit (queue > 5) but under the Standard ceiling (mean 1.4 < 1.5)
    director = _director(store, "legacy-v0.3")
    with pytest.raises(InferenceError) as info:
        director.route(POOL, "/v1/completions", {}, b'{"model":"std","prompt":"hi"}')
    assert info.value.status == 429
    assert director.admission.shed_counts["scheduler-shed"] == 1
