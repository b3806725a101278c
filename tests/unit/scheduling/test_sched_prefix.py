"""Prefix-cache scoring: block hashing, the LRU index, and the anti-hotspot guard."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.scheduling.plugins.prefix_cache import PrefixCacheParams, PrefixCacheScorer, overloaded
from inferpool.scheduling.plugins.prefix_index import PrefixIndex, block_hashes

from .conftest import ep, req

DOC = "".join(f"line {i:04d} of a long shared system prompt.\n" for i in range(200))  # ~8 KB


def test_block_hashes_full_blocks_only_and_chained() -> None:
    assert block_hashes("x" * 63, "m", 64, 256) == []
    one = block_hashes("a" * 64 + "b" * 64 + "tail", "m", 64, 256)
    assert len(one) == 2
    # chained: the same second block after a different first block hashes differently
    other = block_hashes("c" * 64 + "b" * 64, "m", 64, 256)
    assert one[1] != other[1]
    # seeded with the model: same text, other model, no shared hashes
    assert not set(block_hashes("a" * 128, "m2", 64, 256)) & set(one)
    assert block_hashes("a" * 640, "m", 64, 3) == block_hashes("a" * 640, "m", 64, 256)[:3]


def test_block_hashes_non_ascii_uses_characters() -> None:
    text = "é" * 128
    assert len(block_hashes(text, "m", 64, 256)) == 2
    assert block_hashes(text, "m", 64, 256) != block_hashes("e" * 128, "m", 64, 256)


def test_index_match_counts_leading_blocks() -> None:
    index = PrefixIndex()
    h = block_hashes(DOC, "m", 64, 256)
    index.add("a", h[:10], 1000)
    index.add("b", h[:4], 1000)
    assert index.match(h) == {"a": 10, "b": 4}
    assert index.match(block_hashes("zzz" + DOC, "m", 64, 256)) == {}


def test_index_lru_evicts_oldest_and_is_bounded() -> None:
    index = PrefixIndex()
    for i in range(50):
        index.add("a", block_hashes(f"{i:064d}" * 3, "m", 64, 256), capacity=20)
        assert index.size("a") <= 20
    assert index.distinct_blocks() == 20
    # the most recent prompt is still fully there, the first is gone
    assert index.match(block_hashes(f"{49:064d}" * 3, "m", 64, 256)) == {"a": 3}
    assert index.match(block_hashes(f"{0:064d}" * 3, "m", 64, 256)) == {}
    index.remove("a")
    assert index.size() == 0 and index.distinct_blocks() == 0


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 30), st.integers(1, 12)), max_size=60),
    capacity=st.integers(1, 25),
)
def test_index_memory_bounded_property(ops: list[tuple[str, int, int]], capacity: int) -> None:
    index = PrefixIndex()
    for endpoint, seed, blocks in ops:
        index.add(endpoint, block_hashes(f"{seed:064d}" * blocks, "m", 64, 256), capacity)
        for name in "abcd":
            assert index.size(name) <= capacity
    assert index.distinct_blocks() <= 4 * capacity


def test_scorer_learns_from_routing_and_scores_fraction() -> None:
    scorer = PrefixCacheScorer()
    a, b = ep("e-0"), ep("e-1")
    first = req(DOC)
    assert scorer.score(first, [a, b]) == {a: 0.0, b: 0.0}
    scorer.on_routed(first, a)
    # same document, new question: a holds all the document's leading blocks
    second = req(DOC + "What is line 7?")
    scores = scorer.score(second, [a, b])
    total = len(DOC + "What is line 7?") // 64
    assert scores[a] == (len(DOC) // 64) / total and scores[b] == 0.0
    # half the document shared
    half = req(DOC[: len(DOC) // 2] + "x" * (len(DOC) // 2))
    assert 0.45 < scorer.score(half, [a, b])[a] < 0.55


def test_scorer_hashes_once_per_request() -> None:
    scorer = PrefixCacheScorer()
    r = req(DOC)
    hashes = scorer.hashes(r)
    assert scorer.hashes(r) is hashes
    scorer.on_routed(r, ep("e-0"))
    assert scorer.index.size("e-0") == len(hashes)


def test_reused_request_id_does_not_reuse_another_prompts_hashes() -> None:
    scorer = PrefixCacheScorer()
    a = ep("e-0")
    scorer.score(req(DOC, request_id="same"), [a])
    scorer.on_routed(req("q" * 640, request_id="same"), a)  # a different prompt, same id
    assert scorer.score(req("q" * 640), [a])[a] == 1.0
    assert scorer.score(req(DOC), [a])[a] == 0.0


def test_capacity_from_cache_config() -> None:
    scorer = PrefixCacheScorer()
    # vLLM 0.32.0 recorded page: block_size 128, 16384 blocks = 2,097,152 tokens ≈ 8 MiB of text
    known = ep("e-0", cache_block_size=128, cache_num_blocks=16384)
    assert scorer.capacity(known) == 128 * 16384 * 4 // 64
    assert scorer.capacity(ep("e-1")) == 31250
    capped = PrefixCacheScorer(PrefixCacheParams(max_capacity_per_server=1000))
    assert capped.capacity(known) == 1000


def test_capacity_limits_what_an_endpoint_remembers() -> None:
    scorer = PrefixCacheScorer(PrefixCacheParams(lru_capacity_per_server=5))
    small = ep("e-0")
    scorer.on_routed(req(DOC), small)
    assert scorer.index.size("e-0") == 5


def test_endpoint_removed_forgets() -> None:
    scorer = PrefixCacheScorer()
    a = ep("e-0")
    scorer.on_routed(req(DOC), a)
    scorer.on_endpoint_removed("e-0")
    assert scorer.score(req(DOC), [a]) == {a: 0.0}


def test_overloaded_rule() -> None:
    p = PrefixCacheParams(balance_abs_threshold=8, balance_rel_threshold=1.5, kv_cache_threshold=0.9)
    assert not overloaded(8, 0, 0.1, p)  # exactly T more: still fine
    assert overloaded(9, 0, 0.1, p)
    assert not overloaded(30, 25, 0.1, p)  # 5 more than the least loaded
    assert not overloaded(40, 30, 0.1, p)  # 10 more but only 1.33x
    assert overloaded(50, 30, 0.1, p)  # 20 more and 1.67x
    assert overloaded(0, 0, 0.95, p)  # KV cache nearly full


def test_anti_hotspot_load_wins_over_cache_hit() -> None:
    scorer = PrefixCacheScorer()
    hot, idle = ep("e-0"), ep("e-1")
    scorer.on_routed(req(DOC), hot)
    hot.in_flight = 20  # every request with this prefix went here
    scores = scorer.score(req(DOC), [hot, idle])
    assert scores == {hot: 0.0, idle: 0.0}
    hot.in_flight = 5
    assert scorer.score(req(DOC), [hot, idle])[hot] == 1.0
    hot.in_flight, hot.metrics = 0, replace(hot.metrics, kv_cache_usage=0.97)
    assert scorer.score(req(DOC), [hot, idle])[hot] == 0.0


def test_default_profile_does_not_pile_a_hot_prefix_onto_one_replica() -> None:
    """A stream of identical-prefix requests must spread once the favourite gets busy."""
    from inferpool.scheduling import load_scheduler

    scheduler = load_scheduler("default")
    endpoints = [ep(f"e-{i}") for i in range(4)]
    for _ in range(200):  # nothing completes: in-flight only grows
        r = req(DOC + "question")
        chosen = scheduler.schedule(r, endpoints).ranked[0].endpoint
        chosen.in_flight += 1
        scheduler.on_routed(r, chosen)
    loads = sorted(e.in_flight for e in endpoints)
    p = PrefixCacheParams()
    # without the guard all 200 land on one replica; with it the spread stays within the rule
    assert loads[0] > 0, loads
    assert loads[-1] <= max(loads[0] + p.balance_abs_threshold, p.balance_rel_threshold * loads[0]) + 1, loads


def test_without_the_guard_the_prefix_would_pile_up() -> None:
    """The control for the test above: thresholds off → one replica takes everything."""
    from inferpool.scheduling import Profile, Scheduler, WeightedScorer
    from inferpool.scheduling.plugins.max_score import MaxScorePicker
    from inferpool.scheduling.plugins.queue import QueueScorer

    never = PrefixCacheParams(balance_abs_threshold=10**9, kv_cache_threshold=10.0)
    scheduler = Scheduler(
        Profile(
            "no-guard",
            [],
            [WeightedScorer(QueueScorer(), 2), WeightedScorer(PrefixCacheScorer(never), 3)],
            MaxScorePicker(),
        )
    )
    endpoints = [ep(f"e-{i}") for i in range(4)]
    for _ in range(50):
        r = req(DOC + "question")
        chosen = scheduler.schedule(r, endpoints).ranked[0].endpoint
        chosen.in_flight += 1
        scheduler.on_routed(r, chosen)
    assert sorted(e.in_flight for e in endpoints) == [0, 0, 0, 50]
