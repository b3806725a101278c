"""Pickers: tie-breaking, the weighted pick's distribution, baselines."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.scheduling import ScoredEndpoint
from inferpool.scheduling.plugins.max_score import MaxScorePicker
from inferpool.scheduling.plugins.random_picker import RandomPicker
from inferpool.scheduling.plugins.round_robin import RoundRobinPicker
from inferpool.scheduling.plugins.weighted_random import WeightedRandomPicker

from .conftest import ep


def scored(*totals: float) -> list[ScoredEndpoint]:
    return [ScoredEndpoint(ep(f"e-{i}"), t, {}) for i, t in enumerate(totals)]


def test_max_score_orders_by_total() -> None:
    items = scored(0.2, 0.9, 0.5)
    assert [s.total for s in MaxScorePicker().pick(items)] == [0.9, 0.5, 0.2]


def test_max_score_breaks_ties_randomly() -> None:
    items = scored(1.0, 1.0, 1.0, 0.1)
    picker = MaxScorePicker(rng=random.Random(7))
    firsts = Counter(picker.pick(items)[0].endpoint.name for _ in range(3000))
    assert set(firsts) == {"e-0", "e-1", "e-2"}
    assert all(800 < n < 1200 for n in firsts.values()), firsts
    assert all(picker.pick(items)[-1].endpoint.name == "e-3" for _ in range(50))


def test_weighted_random_within_5_percent_over_10000_picks() -> None:
    items = scored(1.0, 2.0, 3.0, 4.0)
    picker = WeightedRandomPicker(rng=random.Random(12345))
    counts = Counter(picker.pick(items)[0].endpoint.name for _ in range(10_000))
    for i, weight in enumerate([1, 2, 3, 4]):
        expected = 10_000 * weight / 10
        assert abs(counts[f"e-{i}"] - expected) <= 0.05 * expected, counts


@settings(max_examples=15, deadline=None)
@given(weights=st.lists(st.floats(0.0, 7.0), min_size=1, max_size=6), seed=st.integers(0, 2**32))
def test_weighted_random_distribution_property(weights: list[float], seed: int) -> None:
    items = scored(*weights)
    picker = WeightedRandomPicker(rng=random.Random(seed))
    n = 10_000
    counts = Counter(picker.pick(items)[0].endpoint.name for _ in range(n))
    total = sum(weights)
    for i, w in enumerate(weights):
        share = (w / total) if total > 0 else 1 / len(weights)
        assert abs(counts[f"e-{i}"] / n - share) <= 0.05, (weights, counts)


def test_weighted_random_returns_everyone_zero_scores_last() -> None:
    items = scored(0.0, 2.0, 0.0, 1.0)
    order = WeightedRandomPicker().pick(items)
    assert sorted(s.endpoint.name for s in order) == ["e-0", "e-1", "e-2", "e-3"]
    assert {s.endpoint.name for s in order[2:]} == {"e-0", "e-2"}


def test_weighted_random_with_denormal_scores_is_still_fair() -> None:
    picker = WeightedRandomPicker(rng=random.Random(0))
    items = scored(5e-324, 5e-324)
    firsts = Counter(picker.pick(items)[0].endpoint.name for _ in range(4000))
    assert all(1800 < n < 2200 for n in firsts.values()), firsts


def test_random_picker_is_uniform_and_complete() -> None:
    items = scored(5.0, 0.0, 0.0)
    picker = RandomPicker(rng=random.Random(3))
    firsts = Counter(picker.pick(items)[0].endpoint.name for _ in range(3000))
    assert all(850 < n < 1150 for n in firsts.values()), firsts
    assert len(picker.pick(items)) == 3


def test_round_robin_takes_turns_by_name() -> None:
    items = scored(0.0, 0.0, 0.0)
    picker = RoundRobinPicker()
    firsts = [picker.pick(list(reversed(items)))[0].endpoint.name for _ in range(6)]
    assert firsts == ["e-0", "e-1", "e-2", "e-0", "e-1", "e-2"]
    assert [s.endpoint.name for s in picker.pick(items)] == ["e-0", "e-1", "e-2"]
    assert picker.pick([]) == []
