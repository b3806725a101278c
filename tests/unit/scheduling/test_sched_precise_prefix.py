"""The exact KV block index and the precise prefix scorer (with its approximate fallback)."""

from __future__ import annotations

from typing import Any

import pytest

from inferpool.scheduling import SchedulingRequest, load_scheduler
from inferpool.scheduling.config import ConfigError, build_scheduler, parse_config
from inferpool.scheduling.plugins.precise_prefix import PrecisePrefixCacheScorer, PrecisePrefixParams
from inferpool.scheduling.plugins.prefix_cache import PrefixCacheScorer
from inferpool.state import Endpoint
from inferpool.state.kvindex import PORT_LABEL, KVBlockIndex, KVEventsSettings, chain_keys, root_key
from inferpool.tokenization import Tokenizer

from .conftest import ep, req

BS = 16
TOKENS = list(range(1000, 1000 + 8 * BS))


# -- chain keys ------------------------------------------------------------------------------------


def test_chain_keys_name_the_whole_prefix() -> None:
    keys = chain_keys(TOKENS, BS, None)
    assert len(keys) == 8
    assert chain_keys(TOKENS[: 3 * BS + 5], BS, None) == keys[:3]  # a prefix has a prefix of the keys
    assert (
        chain_keys([*TOKENS[:BS], 7, *TOKENS[BS + 1 :]], BS, None)[1:] != keys[1:]
    )  # one token changes the rest
    assert chain_keys(TOKENS, BS, None, max_blocks=2) == keys[:2]


def test_chain_keys_differ_by_adapter_and_block_size() -> None:
    base = chain_keys(TOKENS, BS, None)
    a = chain_keys(TOKENS, BS, "food-review")
    assert chain_keys(TOKENS, BS, "food-review") == a
    assert not set(base) & set(a)
    assert not set(a) & set(chain_keys(TOKENS, BS, "cad-fabricator"))
    assert root_key(None) == root_key("") != root_key("x")
    assert chain_keys(TOKENS, 32, None)[0] != base[1]


# -- the index -------------------------------------------------------------------------------------


def _store(index: KVBlockIndex, source: str, first: int, count: int, lora: str | None = None) -> None:
    """Blocks `first`..`first+count-1` of TOKENS, engine hashes 100+i (the engine's own naming)."""
    parent = None if first == 0 else 100 + first - 1
    hashes = [100 + i for i in range(first, first + count)]
    assert index.stored(source, hashes, parent, TOKENS[first * BS : (first + count) * BS], BS, lora)


def test_index_add_match_remove_and_clear() -> None:
    index = KVBlockIndex()
    keys = chain_keys(TOKENS, BS, None)
    _store(index, "a", 0, 3)
    _store(index, "a", 3, 2)  # chained on engine hash 102, which the index maps to its own key
    _store(index, "b", 0, 2)
    assert index.match(keys, ["a", "b", "c"]) == {"a": 5, "b": 2, "c": 0}
    index.removed("a", [101])  # a hole: matching stops there
    assert index.match(keys, ["a"]) == {"a": 1}
    index.cleared("a")
    assert index.match(keys, ["a", "b"]) == {"a": 0, "b": 2}
    assert index.size("a") == 0 and index.size() == 2
    index.drop("b")
    assert index.size() == 0 and index.sources() == ["a"]


def test_a_block_whose_parent_was_never_seen_matches_nothing_but_balances() -> None:
    index = KVBlockIndex()
    assert index.stored("a", [500, 501], 499, TOKENS[2 * BS : 4 * BS], BS, None)
    assert index.size("a") == 0
    index.removed("a", [500, 501])
    _store(index, "a", 0, 4)
    assert index.match(chain_keys(TOKENS, BS, None), ["a"]) == {"a": 4}


def test_two_engine_hashes_for_one_block_keep_it_until_both_are_gone() -> None:
    """vLLM hashes the adapter path too: re-pointing a name gives new engine hashes for the same key."""
    index = KVBlockIndex()
    index.stored("a", [1], None, TOKENS[:BS], BS, "x")
    index.stored("a", [2], None, TOKENS[:BS], BS, "x")
    index.stored("a", [2], None, TOKENS[:BS], BS, "x")  # a repeated store of one hash counts once
    key = chain_keys(TOKENS, BS, "x")[:1]
    index.removed("a", [1])
    assert index.match(key, ["a"]) == {"a": 1}
    index.removed("a", [2])
    assert index.match(key, ["a"]) == {"a": 0}


def test_misaligned_or_foreign_block_sizes_are_not_indexed() -> None:
    index = KVBlockIndex()
    assert index.stored("a", [1, 2], None, TOKENS[: BS + 3], BS, None)  # tokens do not fill two blocks
    assert index.size("a") == 0
    _store(index, "a", 0, 1)
    assert index.stored("a", [9], None, TOKENS[:32], 32, None)  # another block size than the first seen
    assert index.size("a") == 1 and index.block_size("a") == BS


def test_a_source_past_its_bound_is_cleared_and_not_live() -> None:
    index = KVBlockIndex(max_blocks_per_source=4)
    index.set_live("a", True)
    _store(index, "a", 0, 3)
    assert index.is_live("a")
    assert not index.stored("a", [103, 104], 102, TOKENS[3 * BS : 5 * BS], BS, None)
    assert index.size("a") == 0 and not index.is_live("a")


def test_events_port_from_the_label_or_the_default() -> None:
    settings = KVEventsSettings(port=5557, replay_port=5558)
    plain = Endpoint("e", "10.0.0.1", 8000, "default/p")
    labelled = Endpoint("f", "10.0.0.2", 8000, "default/p", labels={PORT_LABEL: "6001"})
    v6 = Endpoint("g", "fd00::1", 8000, "default/p", labels={PORT_LABEL: "not-a-port"})
    assert settings.source(plain) == "10.0.0.1:5557"
    assert settings.source(labelled) == "10.0.0.2:6001"
    assert settings.source(v6) == "[fd00::1]:5557"
    assert settings.replay_source(plain) == "10.0.0.1:5558"
    assert KVEventsSettings().replay_source(plain) is None


# -- the scorer ------------------------------------------------------------------------------------

SIM = Tokenizer()


def _scorer(index: KVBlockIndex | None = None, **params: Any) -> PrecisePrefixCacheScorer:
    scorer = PrecisePrefixCacheScorer(PrecisePrefixParams(**params))
    if index is not None:
        scorer.bind_kv_index(index)
    return scorer


def _completion(prompt: Any, model: str = "m", **kw: Any) -> SchedulingRequest:
    text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
    return req(text, model=model, body={"model": model, "prompt": prompt}, **kw)


def _hold(
    index: KVBlockIndex, endpoint: Endpoint, tokens: list[int], blocks: int, lora: str | None = None
) -> None:
    """What `endpoint`'s events would say after caching the first `blocks` blocks of `tokens`."""
    source = KVEventsSettings().source(endpoint)
    index.set_live(source, True)
    hashes = [hash((source, i)) for i in range(blocks)]
    index.stored(source, hashes, None, tokens[: blocks * BS], BS, lora)


PROMPT = "the system prompt all users share, then a question " * 12


def test_scores_are_the_fraction_of_cacheable_blocks_held() -> None:
    index = KVBlockIndex()
    a, b, c = ep("e-0"), ep("e-1"), ep("e-2")
    tokens = SIM.encode(PROMPT)  # completions: BOS + text, as the sim encodes them
    cacheable = (len(tokens) - 1) // BS
    _hold(index, a, tokens, cacheable)
    _hold(index, b, tokens, cacheable // 2)
    _hold(index, c, [7] * len(tokens), cacheable)
    scores = _scorer(index).score(_completion(PROMPT), [a, b, c])
    assert scores[a] == 1.0
    assert scores[b] == pytest.approx((cacheable // 2) / cacheable)
    assert scores[c] == 0.0


def test_endpoints_without_a_live_stream_fall_back_to_the_approximate_index() -> None:
    index = KVBlockIndex()
    live, silent = ep("e-0"), ep("e-1")
    tokens = SIM.encode(PROMPT)
    _hold(index, live, tokens, 2)
    scorer = _scorer(index)
    routed = _completion(PROMPT)
    scorer.on_routed(routed, silent)  # the approximate index learns from routing, as prefix-cache-scorer
    scores = scorer.score(_completion(PROMPT), [live, silent])
    assert scores[live] == pytest.approx(2 / ((len(tokens) - 1) // BS))
    assert scores[silent] == 1.0  # approximate: it was sent this very prompt
    index.set_live(KVEventsSettings().source(live), False)
    assert (
        scorer.score(_completion(PROMPT), [live, silent])[live] == 0.0
    )  # now approximate too: never routed there


def test_without_index_body_or_live_streams_it_is_the_approximate_scorer() -> None:
    endpoints = [ep("e-0"), ep("e-1")]
    approx = PrefixCacheScorer()
    request = _completion(PROMPT)
    approx.on_routed(request, endpoints[1])
    for scorer in (_scorer(None), _scorer(KVBlockIndex())):
        scorer.on_routed(request, endpoints[1])
        assert scorer.score(_completion(PROMPT), endpoints) == approx.score(_completion(PROMPT), endpoints)
    index = KVBlockIndex()
    _hold(index, endpoints[0], SIM.encode(PROMPT), 3)
    no_body = req(PROMPT)
    assert _scorer(index).score(no_body, endpoints) == {endpoints[0]: 0.0, endpoints[1]: 0.0}


def test_an_overloaded_endpoint_gets_no_cache_credit() -> None:
    index = KVBlockIndex()
    hot, idle = ep("e-0", queue=30), ep("e-1")
    tokens = SIM.encode(PROMPT)
    _hold(index, hot, tokens, 4)
    assert _scorer(index).score(_completion(PROMPT), [hot, idle])[hot] == 0.0
    full = ep("e-2", kv=0.95)
    _hold(index, full, tokens, 4)
    assert _scorer(index).score(_completion(PROMPT), [full])[full] == 0.0


def test_adapter_blocks_count_only_for_that_adapter() -> None:
    index = KVBlockIndex()
    a = ep("e-0")
    tokens = SIM.encode(PROMPT)
    _hold(index, a, tokens, 4, lora="food-review")
    scorer = _scorer(index)
    assert scorer.score(_completion(PROMPT, model="food-review", lora_adapter=True), [a])[a] > 0
    assert scorer.score(_completion(PROMPT, model="food-review", lora_adapter=False), [a])[a] == 0
    assert (
        scorer.score(_completion(PROMPT, model="food-review", lora_adapter=None), [a])[a] > 0
    )  # unknown: both
    assert scorer.score(_completion(PROMPT, model="cad", lora_adapter=True), [a])[a] == 0


def test_chat_is_rendered_and_tokenized_as_the_sim_does() -> None:
    from inferpool.sim import protocol

    messages = [
        {"role": "system", "content": "You review food. " * 20},
        {"role": "user", "content": [{"type": "text", "text": "Is the "}, {"type": "image_url"}, {"type": "text", "text": "pasta good?"}]},
    ]  # fmt: skip
    parsed = [protocol.ChatMessage.model_validate(m) for m in messages]
    engine_ids = SIM.encode(SIM.apply_chat_template([(m.role, m.text()) for m in parsed]), add_bos=False)
    index = KVBlockIndex()
    a = ep("e-0")
    _hold(index, a, engine_ids, (len(engine_ids) - 1) // BS)
    request = req("flattened", body={"model": "m", "messages": messages})
    assert _scorer(index).score(request, [a])[a] == 1.0


def test_token_id_prompts_are_used_as_they_are() -> None:
    index = KVBlockIndex()
    a = ep("e-0")
    _hold(index, a, TOKENS, 4)
    assert _scorer(index).score(_completion(TOKENS), [a])[a] == pytest.approx(4 / ((len(TOKENS) - 1) // BS))
    assert _scorer(index).score(_completion([TOKENS, [1, 2]]), [a])[a] > 0  # a batch: its first prompt


def test_the_scorer_reads_block_size_and_stream_from_each_endpoint() -> None:
    index = KVBlockIndex()
    a = ep("e-0")
    b = Endpoint("e-1", "10.0.0.9", 8000, "default/p", labels={PORT_LABEL: "7000"})
    tokens = SIM.encode(PROMPT)
    _hold(index, a, tokens, 4)
    source_b = KVEventsSettings().source(b)
    index.set_live(source_b, True)
    index.stored(source_b, [1, 2], None, tokens[:64], 32, None)
    scores = _scorer(index).score(_completion(PROMPT), [a, b])
    assert scores[a] == pytest.approx(4 / ((len(tokens) - 1) // 16))
    assert scores[b] == pytest.approx(2 / ((len(tokens) - 1) // 32))


def test_the_precise_prefix_profile_and_parameters() -> None:
    scheduler = load_scheduler("precise-prefix")
    scorers = {w.scorer.name: w.weight for w in scheduler.profile.scorers}
    assert scorers == {"queue-scorer": 2, "kv-cache-utilization-scorer": 2, "precise-prefix-cache-scorer": 3}
    text = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: precise-prefix-cache-scorer
  parameters: {kvEventsPort: 6000, kvEventsReplayPort: 6001, kvEventsTopic: kv, maxBlocksPerEndpoint: 1000}
schedulingProfiles:
- name: p
  plugins: [{pluginRef: precise-prefix-cache-scorer}]
"""
    scorer = build_scheduler(parse_config(text)).profile.scorers[0].scorer
    assert isinstance(scorer, PrecisePrefixCacheScorer)
    assert scorer.kv_events == KVEventsSettings(6000, 6001, "kv", 1000)
    bad = text.replace("kvEventsPort: 6000", "tokenizer: /no/such/tokenizer.json")
    with pytest.raises(ConfigError, match="tokenizer"):
        build_scheduler(parse_config(bad))
