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


def test_precise_reads_each_engines_kv_events_in_virtual_time() -> None:
    """With a profile that reads KV events, every engine's block events reach the core's index
    as it steps: at the end the index holds, per endpoint, exactly the blocks its engine caches."""
    opts = WorkloadOptions(groups=6, system_prompt_tokens=600, output_tokens=16)
    trace = TraceSpec("shared-prefix", 30.0, 3.0, 2, "poisson", opts).build()
    run = simulate(trace, 3, "precise")
    assert all(r.ok for r in run.results)
    assert set(run.index_blocks) == set(run.cached_blocks) == {"r0", "r1", "r2"}
    assert all(count > 0 for count in run.cached_blocks.values())
    assert run.index_blocks == run.cached_blocks
    assert simulate(trace, 3, "default").index_blocks == {}  # no KV events read: none followed
