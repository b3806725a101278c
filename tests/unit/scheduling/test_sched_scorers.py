"""Load scorers: exact formulas, and the [0, 1] range for any input (hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.scheduling.plugins.kv_cache import KVCacheUtilizationScorer
from inferpool.scheduling.plugins.least_request import LeastRequestScorer
from inferpool.scheduling.plugins.lora_affinity import LoraAffinityScorer
from inferpool.scheduling.plugins.prefix_cache import PrefixCacheScorer
from inferpool.scheduling.plugins.queue import QueueScorer
from inferpool.scheduling.plugins.running import RunningRequestsScorer
from inferpool.scheduling.plugins.token_load import TokenLoadScorer
from inferpool.state import Endpoint, EndpointMetrics

from .conftest import ep, req


def test_queue_scorer_is_min_max_inverse() -> None:
    a, b, c = ep("e-0", queue=0), ep("e-1", queue=5), ep("e-2", queue=10)
    scores = QueueScorer().score(req(), [a, b, c])
    assert scores == {a: 1.0, b: 0.5, c: 0.0}


def test_queue_scorer_equal_queues_all_one() -> None:
    a, b = ep("e-0", queue=7), ep("e-1", queue=7)
    assert QueueScorer().score(req(), [a, b]) == {a: 1.0, b: 1.0}


def test_kv_scorer_is_one_minus_usage_and_clamped() -> None:
    a, b, c, d = ep("e-0", kv=0.25), ep("e-1", kv=1.0), ep("e-2", kv=1.7), ep("e-3", kv=math.nan)
    scores = KVCacheUtilizationScorer().score(req(), [a, b, c, d])
    assert scores == {a: 0.75, b: 0.0, c: 0.0, d: 0.0}


def test_running_scorer() -> None:
    a, b = ep("e-0", running=2), ep("e-1", running=6)
    assert RunningRequestsScorer().score(req(), [a, b]) == {a: 1.0, b: 0.0}


def test_least_request_uses_gateway_in_flight_not_metrics() -> None:
    a, b, c = ep("e-0", in_flight=3, queue=50), ep("e-1", in_flight=1), ep("e-2", in_flight=5)
    assert LeastRequestScorer().score(req(), [a, b, c]) == {a: 0.5, b: 1.0, c: 0.0}


def test_token_load_scorer() -> None:
    a, b = ep("e-0"), ep("e-1")
    a.in_flight_tokens, b.in_flight_tokens = 4000, 1000
    assert TokenLoadScorer().score(req(), [a, b]) == {a: 0.0, b: 1.0}


metrics_strategy = st.builds(
    EndpointMetrics,
    waiting_queue_size=st.integers(-5, 10_000),
    running_requests=st.integers(-5, 10_000),
    kv_cache_usage=st.floats(allow_nan=True, allow_infinity=True),
    active_adapters=st.frozensets(st.sampled_from(["a", "b", "c", "d"])),
    waiting_adapters=st.frozensets(st.sampled_from(["a", "b", "c", "d"])),
    max_active_adapters=st.integers(0, 4),
    cache_block_size=st.none() | st.integers(1, 256),
    cache_num_blocks=st.none() | st.integers(1, 100_000),
)


@st.composite
def endpoint_sets(draw: st.DrawFn) -> list[Endpoint]:
    metrics = draw(st.lists(metrics_strategy, min_size=1, max_size=12))
    endpoints = []
    for i, m in enumerate(metrics):
        e = Endpoint(name=f"e-{i}", address=f"10.0.0.{i}", port=8000, pool="default/p", metrics=m)
        e.in_flight = draw(st.integers(0, 500))
        e.in_flight_tokens = draw(st.integers(0, 10**7))
        endpoints.append(e)
    return endpoints


SCORERS = [
    QueueScorer,
    KVCacheUtilizationScorer,
    RunningRequestsScorer,
    TokenLoadScorer,
    LeastRequestScorer,
    LoraAffinityScorer,
    PrefixCacheScorer,
]


@settings(max_examples=150, deadline=None)
@given(
    endpoints=endpoint_sets(),
    model=st.sampled_from(["a", "b", "base"]),
    prompt=st.text(max_size=700),
    routed=st.lists(st.integers(0, 11), max_size=6),
)
def test_every_scorer_returns_a_score_in_0_1_for_every_endpoint(
    endpoints: list[Endpoint], model: str, prompt: str, routed: list[int]
) -> None:
    for cls in SCORERS:
        scorer = cls()
        if isinstance(scorer, PrefixCacheScorer):  # give the index something to match
            for i in routed:
                scorer.on_routed(req(prompt, model=model), endpoints[i % len(endpoints)])
        scores = scorer.score(req(prompt, model=model), endpoints)
        assert set(scores) == set(endpoints), cls.__name__
        for value in scores.values():
            assert 0.0 <= value <= 1.0, (cls.__name__, value)
