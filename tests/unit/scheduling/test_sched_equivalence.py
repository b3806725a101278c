"""The column fast path picks exactly what the per-endpoint-dict scheduler picked.

Every built-in profile runs side by side with `ReferenceScheduler` (the old code) over
evolving pools: varied and tied loads, adapters, broken KV readings, subsets, a warm
prefix index, requests routed and completed. Plugins draw from generators seeded alike,
so the whole ranking must match: order, totals (bit for bit) and per-scorer scores.
Time budget: about 5 s on a busy 2-core machine.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.scheduling import (
    BUILTIN_PROFILES,
    Profile,
    Scheduler,
    SchedulingRequest,
    SchedulingResult,
    WeightedScorer,
    load_scheduler,
)
from inferpool.scheduling.plugins.max_score import MaxScorePicker
from inferpool.scheduling.types import Ranking
from inferpool.state import Endpoint, EndpointMetrics

from .conftest import ep
from .reference_scheduler import ReferenceScheduler, reference_pick, seed_plugins
from .test_sched_pickers import scored

MODELS = ("llama", "ad-1", "ad-2")
WORDS = ("alpha", "beta", "gamma", "delta", "kv", "cache", "prefix", "token", "route", "pool")


def document(rng: random.Random, chars: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(chars // 5))[:chars]


def metrics(rng: random.Random, idle: bool) -> EndpointMetrics:
    if idle:  # every endpoint alike: totals tie and the random tie-break decides
        return EndpointMetrics(scraped_at=1.0)
    kv = rng.choice([0.0, 1.0, 0.95, rng.random(), rng.random(), float("nan"), 1.2, -0.1])
    active = frozenset(rng.sample(MODELS[1:], rng.randrange(0, 3)))
    return EndpointMetrics(
        waiting_queue_size=rng.choice([0, 0, 1, 3, rng.randrange(0, 40)]),
        running_requests=rng.randrange(0, 64),
        kv_cache_usage=kv,
        active_adapters=active,
        waiting_adapters=frozenset(rng.sample(MODELS[1:], rng.randrange(0, 2))),
        max_active_adapters=rng.randrange(0, 3),
        loaded_adapters=rng.choice([None, active, frozenset(MODELS[1:])]),
        cache_block_size=16,
        cache_num_blocks=rng.choice([64, 8192]),
        scraped_at=1.0,
    )


def fleet(rng: random.Random, size: int) -> list[Endpoint]:
    return [replace(ep(f"e-{i}"), metrics=metrics(rng, idle=False)) for i in range(size)]


def request(rng: random.Random, n: int, documents: list[str], pool: list[Endpoint]) -> SchedulingRequest:
    prompt = f"{rng.choice(documents)}\nQuestion {n}?" if rng.random() < 0.9 else "short"
    subset = None
    if rng.random() < 0.1:
        subset = frozenset(e.hostport for e in rng.sample(pool, max(1, len(pool) // 2)))
    return SchedulingRequest(
        request_id=f"r{n}",
        pool="default/p",
        target_model=rng.choice(MODELS),
        prompt=prompt,
        priority=rng.choice([-1, 0, 0, 1]),
        prompt_tokens_estimate=len(prompt) // 4,
        subset=subset,
        lora_adapter=rng.choice([True, False, None]),
    )


def shape(result: SchedulingResult) -> tuple[object, ...]:
    ranked = [(s.endpoint.name, s.total, s.scores) for s in result.ranked]
    return result.profile, result.shed, result.filtered_out, ranked, [e.name for e in result.endpoints]


def same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Equal, with NaN equal to NaN (repr compares floats bit for bit, NaN included)."""
    return repr(a) == repr(b)


def run_side_by_side(name: str, size: int, steps: int, seed: int) -> int:
    """Drive both schedulers through `steps` decisions; returns how many had tied totals at the top."""
    rng = random.Random(seed)
    fast, ref = load_scheduler(name), ReferenceScheduler(load_scheduler(name).profile)
    seed_plugins(fast, f"{seed}")
    seed_plugins(ref, f"{seed}")
    pool = fleet(rng, size)
    documents = [document(rng, rng.choice([700, 2000, 9000])) for _ in range(4)]
    in_flight: list[tuple[SchedulingRequest, Endpoint]] = []
    ties = 0
    for n in range(steps):
        idle = rng.random() < 0.15
        for endpoint in pool:
            if idle or rng.random() < 0.3:  # a scrape replaces the metrics object
                endpoint.metrics = metrics(rng, idle)
        if idle:
            for endpoint in pool:
                endpoint.in_flight = endpoint.in_flight_tokens = 0
        req = request(rng, n, documents, pool)
        got, want = fast.schedule(req, pool), ref.schedule(req, pool)
        assert same(shape(got), shape(want)), f"{name} size {size} step {n}"
        if len(got.ranked) > 1 and got.ranked[0].total == got.ranked[1].total:
            ties += 1
        if got.ranked:
            chosen = got.ranked[0].endpoint
            fast.on_routed(req, chosen)
            ref.on_routed(req, chosen)
            chosen.in_flight += 1
            chosen.in_flight_tokens += req.prompt_tokens_estimate
            in_flight.append((req, chosen))
        while in_flight and rng.random() < 0.5:
            done, endpoint = in_flight.pop(rng.randrange(len(in_flight)))
            fast.on_completed(done, endpoint)
            ref.on_completed(done, endpoint)
            endpoint.in_flight -= 1
            endpoint.in_flight_tokens -= done.prompt_tokens_estimate
    return ties


@pytest.mark.parametrize("name", BUILTIN_PROFILES)
def test_builtin_profiles_pick_what_the_dict_scheduler_picked(name: str) -> None:
    ties = 0
    for size, steps in ((1, 20), (3, 60), (12, 60), (150, 40)):
        ties += run_side_by_side(name, size, steps, seed=size)
    assert ties > 0  # the random tie-break was exercised, not only clear winners


@settings(max_examples=60, deadline=None)
@given(
    totals=st.lists(st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.5, 7.0]), max_size=40), seed=st.integers(0, 2**32)
)
def test_max_score_rank_orders_ties_as_the_tuple_sort_did(totals: list[float], seed: int) -> None:
    items = scored(*totals)
    fast, ref = MaxScorePicker(rng=random.Random(seed)), MaxScorePicker(rng=random.Random(seed))
    assert MaxScorePicker.rank(fast, [s.endpoint for s in items], totals) == [
        items.index(s) for s in reference_pick(ref, items)
    ]
    assert fast.rng.random() == ref.rng.random()  # and it drew as many numbers


def test_ranking_builds_entries_on_access_once() -> None:
    a, b, c = ep("e-0"), ep("e-1"), ep("e-2")
    ranking = Ranking([a, b, c], [2, 0, 1], [0.5, 0.25, 1.0], ["x", "y"], [[0.5, 0.25, 1.0], [0.0, 0.0, 0.0]])
    assert len(ranking) == 3 and ranking.endpoints() == [c, a, b]
    assert ranking._items is None  # nothing built yet
    top = ranking[0]
    assert top.endpoint is c and top.total == 1.0 and top.scores == {"x": 1.0, "y": 0.0}
    assert ranking[0] is top and ranking[-3] is top and ranking[:1] == [top]
    assert [s.endpoint for s in ranking] == [c, a, b] and ranking[1:] == list(ranking)[1:]
    assert ranking == list(ranking) and list(ranking) == ranking and ranking != [top]
    with pytest.raises(IndexError):
        ranking[3]


def test_scheduler_without_rank_or_columns_uses_the_generic_path() -> None:
    """A user-written picker (pick only) and scorer (dict only) still work, clamped as before."""

    class PickOnly:
        name = "pick-only"

        def pick(self, scored: list) -> list:  # type: ignore[type-arg]
            return sorted(scored, key=lambda s: s.endpoint.name, reverse=True)

    class DictOnly:
        name = "dict-only"

        def score(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> dict[Endpoint, float]:
            return {endpoints[0]: 3.0}  # out of range, and the others left out

    a, b = ep("e-0"), ep("e-1")
    result = Scheduler(Profile("t", [], [WeightedScorer(DictOnly(), 2.0)], PickOnly())).schedule(  # type: ignore[arg-type]
        SchedulingRequest("r", "default/p", "m", "p"), [a, b]
    )
    assert isinstance(result.ranked, list)
    assert [(s.endpoint, s.total, s.scores) for s in result.ranked] == [
        (b, 0.0, {"dict-only": 0.0}),
        (a, 2.0, {"dict-only": 1.0}),
    ]
