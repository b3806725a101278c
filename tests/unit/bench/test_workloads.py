"""Workloads and arrivals: seeded, shaped as documented; stats and SLO parsing."""

from __future__ import annotations

import random

import pytest

from inferpool.bench.arrivals import arrival_times
from inferpool.bench.client import RequestResult
from inferpool.bench.stats import Slo, parse_slo, percentile, summarize
from inferpool.bench.workloads import WORKLOADS, WorkloadOptions, build_trace


@pytest.mark.parametrize("profile", ["poisson", "bursty", "step"])
def test_arrivals_have_the_mean_rate(profile: str) -> None:
    times = arrival_times(profile, 50.0, 200.0, random.Random(1))
    assert times == sorted(times) and all(0 <= t < 200 for t in times)
    assert 50 * 200 * 0.85 < len(times) < 50 * 200 * 1.15


def test_step_profile_doubles_rate_halfway() -> None:
    times = arrival_times("step", 20.0, 100.0, random.Random(2))
    first = sum(1 for t in times if t < 50)
    assert 2.3 < (len(times) - first) / first < 3.8  # 1.5R vs R/2


@pytest.mark.parametrize("name", WORKLOADS)
def test_traces_are_seeded(name: str) -> None:
    arrivals = [i * 0.1 for i in range(40)]
    a, b = build_trace(name, arrivals, 7), build_trace(name, arrivals, 7)
    assert a == b and len(a) == 40
    assert build_trace(name, arrivals, 8) != a


def test_shared_prefix_groups_share_system_prompts() -> None:
    opts = WorkloadOptions(groups=3, prompts_per_group=2, system_prompt_tokens=50)
    trace = build_trace("shared-prefix", [0.0] * 60, 1, opts)
    by_group: dict[str, set[str]] = {}
    for r in trace:
        by_group.setdefault(r.tag, set()).add(r.body["prompt"].split("\n")[0])
    assert len(by_group) == 3 and all(len(v) == 1 for v in by_group.values())
    assert all(len({r.body["prompt"] for r in trace if r.tag == g}) <= 2 for g in by_group)


def test_multi_lora_is_zipf_over_adapters() -> None:
    trace = build_trace(
        "multi-lora", [0.0] * 2000, 3, WorkloadOptions(adapters=("a", "b", "c"), base_fraction=0.2)
    )
    counts = {m: sum(1 for r in trace if r.body["model"] == m) for m in ("a", "b", "c")}
    assert counts["a"] > counts["b"] > counts["c"] > 0
    assert 0.15 < sum(1 for r in trace if r.tag.startswith("meta-llama")) / 2000 < 0.25


def test_criticality_and_chat_shapes() -> None:
    crit = build_trace("criticality-overload", [0.0] * 500, 4)
    assert {r.headers["x-gateway-inference-objective"] for r in crit} == {"critical", "standard", "sheddable"}
    chat = build_trace("multi-turn-chat", [0.0] * 30, 4, WorkloadOptions(conversations=2))
    lengths = [
        len(r.body["messages"])
        for r in chat
        if r.body["messages"][0]["content"].startswith("[conversation 0]")
    ]
    assert lengths == sorted(lengths) and lengths[-1] > lengths[0]


def test_slo_and_summary() -> None:
    assert parse_slo("ttft=1s,tpot=100ms") == Slo(ttft=1.0, tpot=0.1)
    with pytest.raises(ValueError):
        parse_slo("latency=3")
    good = RequestResult(
        0, "x", 200, 0.0, ttft=0.5, e2e=1.5, output_tokens=11, prompt_tokens=100, cached_tokens=50
    )
    slow = RequestResult(
        1, "x", 200, 0.0, ttft=2.0, e2e=3.0, output_tokens=11, prompt_tokens=100, cached_tokens=0
    )
    shed = RequestResult(2, "x", 429, 0.0, error="shed")
    s = summarize([good, slow, shed], 10.0, Slo(ttft=1.0, tpot=0.1))
    assert (s.ok, s.shed, s.errors_by_status) == (2, 1, {"429": 1})
    assert s.goodput_rps == pytest.approx(0.1) and s.prefix_hit_rate == pytest.approx(0.25)
    assert good.tpot == pytest.approx(0.1) and percentile([1, 2, 3, 4], 50) == 2.5


def test_agent_long_tail_shape() -> None:
    trace = build_trace("agent-long-tail", [0.0] * 3000, 5)
    plain = sum(1 for r in trace if r.tag == "plain") / len(trace)
    assert 0.26 < plain < 0.34
    counts: dict[str, int] = {}
    for r in trace:
        if r.tag != "plain":
            counts[r.tag] = counts.get(r.tag, 0) + 1
            assert r.body["prompt"].startswith(f"[{r.tag.replace('-', ' ')}] ")
    assert counts["toolset-0"] > counts["toolset-5"] > counts.get("toolset-23", 0)
    outputs = sorted(r.body["max_tokens"] for r in trace)
    median, p99 = outputs[len(outputs) // 2], outputs[int(len(outputs) * 0.99)]
    assert 45 <= median <= 80 and p99 > 10 * median  # short tool calls, a long tail of reports


def test_long_prompt_is_8k_in_256_out_over_shared_documents() -> None:
    from inferpool.bench.workloads import LONG_PROMPT_DOCUMENT_TOKENS, long_prompt_documents
    from inferpool.tokenization import Tokenizer

    # 1.5x one replica's KV cache: 48 documents of 4,096 tokens for 131,072 tokens (--kv-blocks 8192)
    assert long_prompt_documents(8192 * 16) == 48
    with pytest.raises(ValueError):
        long_prompt_documents(0)
    opts = WorkloadOptions(replica_kv_tokens=8192 * 16 // 6)  # 8 documents: every one drawn in 200
    trace = build_trace("long-prompt", [0.0] * 200, 6, opts)
    sim = Tokenizer(remember_pieces=False)
    documents: dict[str, set[str]] = {}
    for r in trace[:20]:
        tokens = len(sim.encode(r.body["prompt"], add_bos=False))
        assert 8192 - 2 <= tokens <= 8192 + 2, tokens  # word-by-word counting is exact to ±1 per part
        assert r.body["max_tokens"] == 256 and r.body["ignore_eos"] and r.path == "/v1/completions"
    for r in trace:
        document = r.body["prompt"].split("\n")[0]
        assert document.startswith(f"[{r.tag.replace('-', ' ')}] ")
        documents.setdefault(r.tag, set()).add(document)
        assert len(sim.encode(document, add_bos=False)) == pytest.approx(LONG_PROMPT_DOCUMENT_TOKENS, abs=1)
    # the shared prefix: one text per document, every document used, each request's own part differs
    assert len(documents) == 8 and all(len(texts) == 1 for texts in documents.values())
    assert len({r.body["prompt"].split("\n")[1] for r in trace}) == len(trace)


def test_long_answer_is_256_in_1024_out_over_four_system_prompts() -> None:
    from inferpool.tokenization import Tokenizer

    trace = build_trace("long-answer", [0.0] * 100, 7)
    sim = Tokenizer(remember_pieces=False)
    assert {r.tag for r in trace} == {f"system-{k}" for k in range(4)}
    for r in trace:
        assert 256 - 2 <= len(sim.encode(r.body["prompt"], add_bos=False)) <= 256 + 2
        assert r.body["max_tokens"] == 1024 and r.body["stream"] and r.body["ignore_eos"]
    systems = {r.tag: {x.body["prompt"].split("\n")[0] for x in trace if x.tag == r.tag} for r in trace}
    assert all(len(texts) == 1 for texts in systems.values())
