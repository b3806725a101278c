"""Virtual-time runs use the real scheduler: prefix-aware routing beats round-robin on hits."""

from __future__ import annotations

from inferpool.bench.loadgen import TraceSpec
from inferpool.bench.stats import Slo, summarize
from inferpool.bench.virtual import simulate
from inferpool.bench.workloads import WorkloadOptions


def test_simulate_routes_every_request_and_default_finds_prefixes() -> None:
    opts = WorkloadOptions(groups=8, system_prompt_tokens=400, output_tokens=16)
    trace = TraceSpec("shared-prefix", 40.0, 3.0, 1, "poisson", opts).build()
    hits = {}
    for profile in ("default", "round-robin"):
        run = simulate(trace, 4, profile)
        assert len(run.results) == len(trace) and all(r.ok and r.ttft is not None for r in run.results)
        assert len(run.decision_seconds) == len(trace)
        hits[profile] = summarize(run.results, run.sim_seconds, Slo()).prefix_hit_rate
    assert hits["default"] > hits["round-robin"]
