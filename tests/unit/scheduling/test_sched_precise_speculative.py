"""Routing in flight counts in the precise index: speculative blocks, their TTL and their removal."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.kvwire import AllBlocksCleared, BlockRemoved, BlockStored
from inferpool.request.core import Core, CoreConfig
from inferpool.scheduling import SchedulingRequest
from inferpool.scheduling.plugins.precise_prefix import PrecisePrefixCacheScorer, PrecisePrefixParams
from inferpool.scrape.kvevents import apply_events
from inferpool.state import Endpoint
from inferpool.state.kvindex import KVBlockIndex, KVEventsSettings
from inferpool.tokenization import Tokenizer

from .conftest import ep, req

BS = 16
SIM = Tokenizer()
PROMPT = "the system prompt a whole tenant shares, then that tenant's question " * 12
TOKENS = SIM.encode(PROMPT)
CACHEABLE = (len(TOKENS) - 1) // BS


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _live(index: KVBlockIndex, endpoint: Endpoint) -> str:
    """The endpoint's stream is live and has told its block size (one unrelated block stored)."""
    source = KVEventsSettings().source(endpoint)
    index.set_live(source, True)
    index.stored(source, [f"other-{source}"], None, [9] * BS, BS, None)
    return source


def _request(**kw: Any) -> SchedulingRequest:
    return req(PROMPT, body={"model": "m", "prompt": PROMPT}, lora_adapter=False, **kw)


def _setup(**params: Any) -> tuple[FakeClock, KVBlockIndex, PrecisePrefixCacheScorer, Endpoint, Endpoint]:
    clock = FakeClock()
    index = KVBlockIndex(clock=clock)
    scorer = PrecisePrefixCacheScorer(PrecisePrefixParams(**params))
    scorer.bind_kv_index(index)
    a, b = ep("e-0"), ep("e-1")
    _live(index, a)
    _live(index, b)
    return clock, index, scorer, a, b


def _route(
    scorer: PrecisePrefixCacheScorer, endpoints: list[Endpoint], to: Endpoint
) -> dict[Endpoint, float]:
    first = _request()
    scores = scorer.score(first, endpoints)
    scorer.on_routed(first, to)
    return scores


def test_a_request_arriving_during_its_groups_first_prefill_gets_a_precise_hit() -> None:
    _, index, scorer, a, b = _setup()
    assert _route(scorer, [a, b], a) == {a: 0.0, b: 0.0}  # cold everywhere
    source_a = KVEventsSettings().source(a)
    assert index.speculative_size(source_a) == CACHEABLE
    second = scorer.score(_request(), [a, b])  # no event yet: a is still computing the prefix
    assert second == {a: 1.0, b: 0.0}
    # The engine confirms: the speculative blocks become confirmed ones, the score stays.
    hashes = [f"h{i}" for i in range(CACHEABLE)]
    index.stored(source_a, hashes, None, TOKENS[: CACHEABLE * BS], BS, None)
    assert index.speculative_size(source_a) == 0
    assert scorer.score(_request(), [a, b]) == {a: 1.0, b: 0.0}


def test_speculative_blocks_expire_after_the_ttl_on_the_index_clock() -> None:
    clock, index, scorer, a, b = _setup(speculativeTTL="500ms")
    _route(scorer, [a, b], a)
    clock.now += 0.499
    assert scorer.score(_request(), [a, b])[a] == 1.0
    clock.now += 0.002  # the events never came (the request failed, or was cancelled)
    assert scorer.score(_request(), [a, b])[a] == 0.0
    assert index.speculative_size(KVEventsSettings().source(a)) == 0
    assert index.size() == 1  # only the unrelated confirmed block both hold is left


def test_speculating_again_extends_and_confirmed_blocks_are_not_speculated() -> None:
    clock, index, scorer, a, b = _setup(speculativeTTL=1.0)
    source_a = KVEventsSettings().source(a)
    index.stored(source_a, ["h0", "h1"], None, TOKENS[: 2 * BS], BS, None)
    _route(scorer, [a, b], a)
    assert index.speculative_size(source_a) == CACHEABLE - 2
    clock.now += 0.8
    _route(scorer, [a, b], a)
    clock.now += 0.8  # past the first TTL, within the second
    assert scorer.score(_request(), [a, b])[a] == 1.0
    assert index.speculative_size(source_a) == CACHEABLE - 2
    clock.now += 0.3  # past the second: the later speculation's blocks go too
    assert index.speculative_size(source_a) == 0
    assert scorer.score(_request(), [a, b])[a] == pytest.approx(2 / CACHEABLE)


def test_eviction_and_clear_remove_speculative_blocks_too() -> None:
    _, index, scorer, a, b = _setup()
    source_a = KVEventsSettings().source(a)
    _route(scorer, [a, b], a)
    # The engine stores the first four blocks, then evicts the third while the rest are in flight.
    first = [
        BlockStored(block_hashes=list(range(4)), parent_block_hash=None,
                    token_ids=TOKENS[: 4 * BS], block_size=BS, lora_id=None, medium=None, lora_name=None)
    ]  # fmt: skip
    apply_events(index, source_a, first)
    assert index.speculative_size(source_a) == CACHEABLE - 4
    apply_events(index, source_a, [BlockRemoved(block_hashes=[2], medium=None)])
    assert scorer.score(_request(), [a, b])[a] == pytest.approx(2 / CACHEABLE)
    apply_events(index, source_a, [AllBlocksCleared()])
    assert index.speculative_size(source_a) == 0 and index.size(source_a) == 0
    assert scorer.score(_request(), [a, b])[a] == 0.0


def test_nothing_is_speculated_when_turned_off_or_when_routed_elsewhere_than_scored() -> None:
    _, index, scorer, a, b = _setup(speculativeIndexing=False)
    _route(scorer, [a, b], a)
    assert index.speculative_size(KVEventsSettings().source(a)) == 0
    assert scorer.score(_request(), [a, b])[a] == 0.0
    _, index, scorer, a, b = _setup()
    scorer.on_routed(_request(), a)  # never scored (no pending keys): nothing to record
    assert index.speculative_size(KVEventsSettings().source(a)) == 0


def test_the_ttl_runs_on_the_cores_clock_in_the_fleets_time() -> None:
    clock = FakeClock()
    core = Core(CoreConfig(scheduler="precise-prefix"), clock=clock)
    assert core.kv_events is not None
    assert core.kv_events.index.clock is clock
    slowed = Core(CoreConfig(scheduler="precise-prefix", fleet_speed=0.25), clock=clock)
    assert slowed.kv_events is not None
    index = slowed.kv_events.index
    assert index.clock() == pytest.approx(clock.now * 0.25)
    source = _live(index, ep("e-0"))
    index.speculate(source, [1, 2], ttl_s=1.0)  # one fleet second = four wall seconds at speed 0.25
    clock.now += 3.9
    assert index.speculative_size(source) == 2
    clock.now += 0.2
    assert index.speculative_size(source) == 0


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("speculate"),
                st.sampled_from("ab"),
                st.lists(st.integers(1, 12), max_size=8),
                st.sampled_from([0.5, 1.0, 2.0]),
            ),
            st.tuples(st.just("wait"), st.sampled_from([0.25, 0.5, 1.0, 1.5])),
        ),
        max_size=40,
    )
)
def test_speculative_blocks_match_a_per_block_expiry_model(steps: list[tuple[Any, ...]]) -> None:
    """The index keeps one expiry entry per speculation, not per block: what it answers is still
    that of a per-block model (each block held until the expiry of the last speculation naming it)."""
    clock = FakeClock()
    index = KVBlockIndex(clock=clock)
    for source in "ab":
        index.set_live(source, True)
    expiry: dict[tuple[str, int], float] = {}
    for step in steps:
        if step[0] == "speculate":
            _, source, keys, ttl = step
            index.speculate(source, keys, ttl)
            for key in keys:
                expiry[source, key] = clock.now + ttl
        else:
            clock.now += step[1]
        for source in "ab":
            held = {k for (s, k), at in expiry.items() if s == source and at > clock.now}
            assert index.speculative_size(source) == len(held)
            chain = list(range(1, 13))
            expected = next((i for i, k in enumerate(chain) if k not in held), len(chain))
            assert index.match(chain, [source])[source] == expected
