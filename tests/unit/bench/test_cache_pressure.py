"""The cache-pressure workload (issue 16, fixed before any run) and the like-for-like `precise` profile."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import yaml

from inferpool.bench.arrivals import RAMP_FRACTIONS, arrival_times
from inferpool.bench.loadgen import TraceSpec
from inferpool.bench.workloads import (
    CACHE_PRESSURE_STEPS,
    WorkloadOptions,
    build_trace,
    cache_pressure_tenants,
    request_classes,
)
from inferpool.scheduling import load_scheduler
from inferpool.scheduling.config import builtin_config_text
from inferpool.scheduling.plugins.precise_prefix import PrecisePrefixCacheScorer
from inferpool.sim.profile import load_profile
from inferpool.tokenization import Tokenizer


def test_tenants_make_the_hot_set_six_replicas_and_one_and_a_half_fleets_of_four() -> None:
    default = load_profile("llama-3.1-8b-h100")
    replica = default.num_gpu_blocks * default.block_size
    assert replica == 448_000
    tenants = cache_pressure_tenants(replica)
    assert tenants == 448
    assert tenants * 6000 == 6 * replica == 1.5 * 4 * replica
    assert cache_pressure_tenants(4096 * 16) == 66  # --kv-blocks 4096: 396k tokens, 6.04 replicas
    assert WorkloadOptions().replica_kv_tokens == replica
    with pytest.raises(ValueError, match="positive"):
        cache_pressure_tenants(0)


def test_requests_are_a_tenant_context_a_fresh_question_and_a_200_token_answer() -> None:
    opts = WorkloadOptions(replica_kv_tokens=5000)  # 5 tenants: small enough to test quickly
    trace = build_trace("cache-pressure", [i * 0.01 for i in range(3000)], 3, opts)
    contexts = Counter(r.body["prompt"].split("\n")[0] for r in trace)
    assert len(contexts) == cache_pressure_tenants(5000) == 5
    counts = [n for _, n in contexts.most_common()]
    # Zipf(0.8) over 5 tenants: 1 : 0.57 : 0.41 : 0.33 : 0.28 of the hottest one
    assert counts[0] / counts[1] == pytest.approx(2**0.8, rel=0.15)
    assert counts[0] / counts[4] == pytest.approx(5**0.8, rel=0.2)
    sim = Tokenizer(remember_pieces=False)
    first = trace[0].body["prompt"]
    context, question = first.split("\n")
    assert 5995 <= len(sim.encode(context, add_bos=False)) <= 6005
    assert 98 <= len(sim.encode(question, add_bos=False)) <= 102
    assert len({r.body["prompt"] for r in trace}) == len(trace)  # every question is new
    assert all(r.body["max_tokens"] == 200 and r.body["ignore_eos"] for r in trace)


def test_the_ramp_rises_in_five_steps_from_20_to_120_percent_and_requests_carry_their_step() -> None:
    capacity, duration = 40.0, 500.0
    times = arrival_times("ramp", capacity, duration, random.Random(5))
    per_step = Counter(min(4, int(t // (duration / 5))) for t in times)
    for step, fraction in enumerate(RAMP_FRACTIONS):
        expected = capacity * fraction * duration / 5
        assert per_step[step] == pytest.approx(expected, rel=0.12)
    assert RAMP_FRACTIONS == (0.2, 0.45, 0.7, 0.95, 1.2)
    spec = TraceSpec("cache-pressure", capacity, duration, 1, "ramp", WorkloadOptions(replica_kv_tokens=3000))
    trace = spec.build()
    assert request_classes("cache-pressure") == CACHE_PRESSURE_STEPS
    for r in trace:
        assert r.tag == CACHE_PRESSURE_STEPS[min(4, int(r.at // (duration / 5)))]


def test_precise_is_default_with_only_its_prefix_scorer_swapped() -> None:
    default = yaml.safe_load(builtin_config_text("default"))
    precise = yaml.safe_load(builtin_config_text("precise"))
    swapped = yaml.safe_load(
        yaml.safe_dump(default).replace("prefix-cache-scorer", "precise-prefix-cache-scorer")
    )
    swapped["schedulingProfiles"][0]["name"] = "precise"
    assert precise == swapped
    weights = {w.scorer.name: w.weight for w in load_scheduler("precise").profile.scorers}
    assert weights == {
        "queue-scorer": 1,
        "kv-cache-utilization-scorer": 1,
        "precise-prefix-cache-scorer": 3,
        "token-load-scorer": 1,
        "lora-affinity-scorer": 1,
    }
    scorer = next(w.scorer for w in load_scheduler("precise").profile.scorers if w.weight == 3)
    assert isinstance(scorer, PrecisePrefixCacheScorer) and scorer.params.speculative_indexing
