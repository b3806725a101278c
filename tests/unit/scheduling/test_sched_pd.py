"""P/D disaggregation in the scheduler: role filters, the prefix-based decider, the profile handler."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferpool.roles import ROLE_LABEL
from inferpool.scheduling import ConfigError, SchedulerSpec, build_scheduler, load_scheduler, parse_config
from inferpool.scheduling.disagg import DisaggScheduler
from inferpool.scheduling.plugins import REGISTRY
from inferpool.scheduling.plugins.pd_decider import (
    PrefixBasedPDDecider,
    PrefixBasedPDDeciderParams,
    non_cached_tokens,
)
from inferpool.scheduling.plugins.prefix_cache import PrefixCacheScorer
from inferpool.scheduling.plugins.random_picker import RandomPicker
from inferpool.scheduling.plugins.roles import DecodeFilter, PrefillFilter
from inferpool.state import Endpoint

from .conftest import ep, req


def role(name: str, value: str | None, **load: object) -> Endpoint:
    endpoint = ep(name, **load)  # type: ignore[arg-type]
    if value is not None:
        endpoint.labels[ROLE_LABEL] = value
    return endpoint


def long_req(chars: int = 4000, text: str = "a", **kw: object):  # type: ignore[no-untyped-def]
    prompt = (text * chars)[:chars]
    return req(prompt, prompt_tokens_estimate=chars // 4, **kw)


def fleet() -> list[Endpoint]:
    return [role("p-0", "prefill"), role("p-1", "prefill"), role("d-2", "decode"), role("d-3", "decode")]


# -- filters ---------------------------------------------------------------------------------


def test_role_filters_follow_llm_d() -> None:
    endpoints = [
        role("e-0", "prefill"),
        role("e-1", "decode"),
        role("e-2", "both"),
        role("e-3", None),
        role("e-4", "encode-prefill"),
        role("e-5", "prefill-decode"),
        role("e-6", "encode"),
    ]
    kept_p = PrefillFilter().filter(req(), endpoints)
    kept_d = DecodeFilter().filter(req(), endpoints)
    assert [e.name for e in kept_p] == ["e-0", "e-2", "e-4", "e-5"]
    assert [e.name for e in kept_d] == ["e-1", "e-2", "e-3", "e-5"]  # unlabelled servers decode
    assert not PrefillFilter.soft and not DecodeFilter.soft


# -- decider ---------------------------------------------------------------------------------


def decider(non_cached: int, prompt_tokens: int = 0) -> PrefixBasedPDDecider:
    return PrefixBasedPDDecider(
        PrefixBasedPDDeciderParams.model_validate(
            {"nonCachedTokens": non_cached, "promptTokens": prompt_tokens}
        )
    )


def test_decider_splits_when_the_uncached_part_reaches_the_threshold() -> None:
    d, r = decider(512), long_req(4000)  # 1000 tokens
    assert d.disaggregate(r, ep("d-0"), cached_chars=0)
    assert d.disaggregate(r, ep("d-0"), cached_chars=1952)  # 488 cached → 512 uncached: exactly at it
    assert not d.disaggregate(r, ep("d-0"), cached_chars=2048)  # 512 cached → 488 uncached
    assert not d.disaggregate(long_req(2000), ep("d-0"), cached_chars=0)  # 500 tokens in all


def test_decider_zero_disables_and_prompt_tokens_gates() -> None:
    assert not decider(0).disaggregate(long_req(40000), ep("d-0"), 0)
    gated = decider(100, prompt_tokens=2000)
    assert not gated.disaggregate(long_req(4000), ep("d-0"), 0)  # 1000 < 2000 prompt tokens
    assert gated.disaggregate(long_req(8000), ep("d-0"), 0)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        decider(-1)


def test_non_cached_tokens_scales_the_estimate_by_the_cached_share() -> None:
    r = req("x" * 1000, prompt_tokens_estimate=300)  # e.g. token ids: not 4 characters a token
    assert non_cached_tokens(r, 0) == 300
    assert non_cached_tokens(r, 500) == 150
    assert non_cached_tokens(r, 5000) == 0


# -- the handler -----------------------------------------------------------------------------


def test_pd_splits_a_long_uncached_prompt_across_roles() -> None:
    s = load_scheduler("pd")
    assert isinstance(s, DisaggScheduler)
    result = s.schedule(long_req(), fleet())
    assert result.profile == "decode" and result.endpoints[0].name.startswith("d-")
    assert result.prefill is not None and result.prefill.profile == "prefill"
    assert {e.name for e in result.prefill.endpoints} == {"p-0", "p-1"}
    assert set(result.filtered_out) == {"p-0", "p-1"}  # the decode profile's view


def test_pd_keeps_short_or_cached_prompts_on_the_decoder() -> None:
    s = load_scheduler("pd")
    endpoints = fleet()
    assert s.schedule(long_req(400), endpoints).prefill is None  # 100 tokens
    r = long_req(text="the same long document ")
    first = s.schedule(r, endpoints)
    assert first.prefill is not None
    decoder = first.endpoints[0]
    s.on_routed(r, decoder)  # the decoder now holds the prompt (it pulled the KV blocks)
    again = s.schedule(long_req(text="the same long document ", request_id="again"), endpoints)
    assert again.endpoints[0] is decoder  # prefix affinity
    assert again.prefill is None  # nothing left worth a remote prefill


def test_prefill_pick_follows_the_prefix_its_own_leg_left() -> None:
    s = load_scheduler("pd")
    endpoints = fleet()
    r = long_req(text="shared system prompt ")
    first = s.schedule(r, endpoints)
    assert first.prefill is not None
    prefiller = first.prefill.endpoints[0]
    s.on_prefill_routed(r, prefiller)  # prefill leg sent: the shared index learns it
    s.on_prefill_completed(r, prefiller)
    prefix = next(p for p in s.plugins() if isinstance(p, PrefixCacheScorer))
    assert prefix.index.size(prefiller.name) > 0
    for i in range(5):
        nxt = s.schedule(long_req(text="shared system prompt ", request_id=f"n{i}"), endpoints)
        assert nxt.prefill is not None and nxt.prefill.endpoints[0] is prefiller
    s.on_endpoint_removed(prefiller.name)
    assert prefix.index.size(prefiller.name) == 0


def test_random_prefill_variant_draws_the_prefill_pick() -> None:
    s = load_scheduler("pd-random-prefill")
    assert isinstance(s, DisaggScheduler)
    assert any(isinstance(p, RandomPicker) for p in s.plugins())
    endpoints = fleet()
    picks = {s.schedule(long_req(request_id=f"r{i}"), endpoints).prefill.endpoints[0].name for i in range(40)}  # type: ignore[union-attr]
    assert picks == {"p-0", "p-1"}


def test_a_both_role_server_is_never_its_own_remote_prefiller() -> None:
    s = load_scheduler("pd")
    only = [role("b-0", "both")]
    result = s.schedule(long_req(), only)
    assert result.endpoints == only and result.prefill is None
    two = [role("b-0", "both"), role("b-1", "both")]
    split = s.schedule(long_req(), two)
    assert split.prefill is not None and split.prefill.endpoints[0] is not split.endpoints[0]


def test_no_prefiller_means_no_split() -> None:
    s = load_scheduler("pd")
    result = s.schedule(long_req(), [role("d-0", "decode"), role("e-1", None)])
    assert result.prefill is None and len(result.ranked) == 2


# -- configuration ---------------------------------------------------------------------------

LLM_D_PD = """
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
- type: queue-scorer
- type: prefill-filter
- type: decode-filter
- type: max-score-picker
- type: disagg-profile-handler
  parameters:
    deciders:
      prefill: prefix-based-pd-decider
- type: prefix-based-pd-decider
  parameters:
    nonCachedTokens: 16
schedulingProfiles:
- name: prefill
  plugins:
  - pluginRef: prefill-filter
  - pluginRef: max-score-picker
  - pluginRef: prefix-cache-scorer
    weight: 2
  - pluginRef: queue-scorer
    weight: 1
- name: decode
  plugins:
  - pluginRef: decode-filter
  - pluginRef: max-score-picker
  - pluginRef: prefix-cache-scorer
    weight: 2
  - pluginRef: queue-scorer
    weight: 1
"""


def build(text: str, profile: str | None = None):  # type: ignore[no-untyped-def]
    return build_scheduler(parse_config(text), profile)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build(text)
    return info.value.problems


def test_llm_d_config_builds_a_pd_scheduler() -> None:
    s = build(LLM_D_PD)
    assert isinstance(s, DisaggScheduler) and s.profile_name == "decode"
    assert s.schedule(req("x" * 200, prompt_tokens_estimate=50), fleet()).prefill is not None
    # naming one profile runs it alone
    only = build(LLM_D_PD, "prefill")
    assert not isinstance(only, DisaggScheduler) and only.profile_name == "prefill"


def test_handler_without_a_decider_runs_the_decode_profile_alone() -> None:
    text = LLM_D_PD.replace("    deciders:\n      prefill: prefix-based-pd-decider\n", "    {}\n")
    s = build(text)
    assert not isinstance(s, DisaggScheduler) and s.profile_name == "decode"


def test_handler_errors_name_the_field() -> None:
    bad_profile = LLM_D_PD.replace("- name: decode\n", "- name: decoder\n")
    assert problems(bad_profile) == [
        "plugins[5].parameters.profiles.decode: no scheduling profile named 'decode' (have prefill, decoder)"
    ]
    renamed = LLM_D_PD.replace(
        "      prefill: prefix-based-pd-decider",
        "      prefill: prefix-based-pd-decider\n    profiles: {prefill: p}",
    )
    assert problems(renamed) == [
        "plugins[5].parameters.profiles.prefill: no scheduling profile named 'p' (have prefill, decode)"
    ]
    missing = LLM_D_PD.replace("      prefill: prefix-based-pd-decider", "      prefill: my-decider")
    assert problems(missing) == [
        "plugins[5].parameters.deciders.prefill: no plugin named 'my-decider' in plugins"
    ]
    wrong_kind = LLM_D_PD.replace("      prefill: prefix-based-pd-decider", "      prefill: queue-scorer")
    assert problems(wrong_kind) == [
        "plugins[5].parameters.deciders.prefill: 'queue-scorer' is a scorer, not a P/D decider"
    ]
    encode = LLM_D_PD.replace(
        "      prefill: prefix-based-pd-decider", "      prefill: prefix-based-pd-decider\n      encode: x"
    )
    assert problems(encode)[0].startswith("plugins[5].parameters.deciders.encode: Value error, encode disagg")
    negative = LLM_D_PD.replace("nonCachedTokens: 16", "nonCachedTokens: -1")
    assert problems(negative)[0].startswith("plugins[6].parameters.nonCachedTokens:")


def test_decider_needs_a_prefix_scorer_in_the_decode_profile() -> None:
    text = LLM_D_PD.replace(
        "  - pluginRef: decode-filter\n  - pluginRef: max-score-picker\n  - pluginRef: prefix-cache-scorer\n    weight: 2\n",
        "  - pluginRef: decode-filter\n  - pluginRef: max-score-picker\n",
    )
    (problem,) = problems(text)
    assert problem.startswith(
        "schedulingProfiles[1].plugins: the P/D decider 'prefix-based-pd-decider' reads"
    )


def test_handlers_and_deciders_stay_out_of_profiles_and_come_once() -> None:
    in_profile = LLM_D_PD.replace(
        "  - pluginRef: queue-scorer\n    weight: 1\n- name: decode",
        "  - pluginRef: prefix-based-pd-decider\n- name: decode",
    )
    assert problems(in_profile) == [
        "schedulingProfiles[0].plugins[3].pluginRef: 'prefix-based-pd-decider' is a decider; "
        "a profile holds filters, scorers and a picker"
    ]
    twice = LLM_D_PD.replace(
        "- type: max-score-picker\n", "- type: max-score-picker\n- type: pd-profile-handler\n"
    )
    assert "plugins: more than one profile handler (plugins[5], plugins[6])" in problems(twice)[0]


def test_old_pd_profile_handler_is_accepted() -> None:
    base = LLM_D_PD.replace(
        "- type: disagg-profile-handler\n  parameters:\n    deciders:\n      prefill: prefix-based-pd-decider\n",
        "- type: pd-profile-handler\n  parameters: {PARAMS}\n",
    )
    # its default decider is the plugin named prefix-based-pd-decider
    assert isinstance(build(base.replace("{PARAMS}", "{primaryPort: 8000}")), DisaggScheduler)
    # its first form: `threshold` counts non-cached characters, 0 = always split
    old = build(base.replace("{PARAMS}", "{threshold: 100, hashBlockSize: 64}"))
    assert isinstance(old, DisaggScheduler)
    assert old.schedule(req("x" * 120, request_id="a"), fleet()).prefill is not None
    assert old.schedule(req("x" * 80, request_id="b"), fleet()).prefill is None
    assert problems(base.replace("{PARAMS}", "{deciderPluginName: nope}")) == [
        "plugins[5].parameters.deciderPluginName: no plugin named 'nope' in plugins"
    ]


def test_pd_builtins_parse_once_and_build_fresh_state() -> None:
    spec = SchedulerSpec.load("pd")
    a, b = spec.build(), spec.build()
    assert isinstance(a, DisaggScheduler) and isinstance(b, DisaggScheduler)
    pa = next(p for p in a.plugins() if isinstance(p, PrefixCacheScorer))
    pb = next(p for p in b.plugins() if isinstance(p, PrefixCacheScorer))
    assert pa is not pb
    # one prefix scorer serves both profiles, as in llm-d
    assert [p for p in a.plugins() if isinstance(p, PrefixCacheScorer)] == [pa]
    assert {"prefill-filter", "decode-filter", "prefix-based-pd-decider", "disagg-profile-handler"} <= set(
        REGISTRY
    )


def test_llm_d_sample_config_loads_as_published() -> None:
    """llm-d-router's deploy/config/pd-epp-config.yaml, copied verbatim (its producer included)."""
    path = Path(__file__).parent / "data" / "llm-d-pd-epp-config.yaml"
    s = load_scheduler(str(path))
    assert (
        isinstance(s, DisaggScheduler) and s.profile_name == "decode" and s.prefill.profile_name == "prefill"
    )
    prefix = next(p for p in s.plugins() if isinstance(p, PrefixCacheScorer))
    # the producer's token settings, in the scorer's characters: 16-token blocks, 16384 tokens
    assert prefix.params.hash_block_size == 64 and prefix.params.max_prefix_blocks_to_match == 1024
    assert prefix.params.lru_capacity_per_server == 31250
    result = s.schedule(req("x" * 200, prompt_tokens_estimate=50), fleet())  # nonCachedTokens: 16
    assert result.prefill is not None and result.prefill.endpoints[0].name.startswith("p-")
