"""The slo-aware profile in virtual time: routes a whole trace, and its predictions converge."""

from __future__ import annotations

import statistics

import pytest

from inferpool.bench.loadgen import TraceSpec
from inferpool.bench.virtual import simulate
from inferpool.bench.workloads import WorkloadOptions
from inferpool.records import RequestRecord
from inferpool.scheduling.plugins.predicted_latency import PredictedLatencyScorer
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint


def test_slo_aware_routes_a_trace_and_learns_observed_ttft(monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[float] = []  # |predicted − observed| TTFT, each predicted before learning from it
    learn = PredictedLatencyScorer.on_finished

    def watch(self: PredictedLatencyScorer, req: SchedulingRequest, e: Endpoint, out: RequestRecord) -> None:
        routed = self._completed.get(req.request_id)
        assert routed is not None, "on_finished must come with the features captured at routing"
        assert out.ttft_s is not None and out.completion_tokens == 16 and out.prompt_tokens
        errors.append(abs(self.predict(e.name, routed.features).ttft_s - out.ttft_s))
        learn(self, req, e, out)

    monkeypatch.setattr(PredictedLatencyScorer, "on_finished", watch)
    opts = WorkloadOptions(groups=12, system_prompt_tokens=1500, output_tokens=16)
    trace = TraceSpec("shared-prefix", 30.0, 8.0, 3, "poisson", opts).build()
    run = simulate(trace, 3, "slo-aware")
    assert len(run.results) == len(trace) and all(r.ok and r.ttft is not None for r in run.results)
    assert len(errors) == len(trace)  # every outcome reached the plugin, with real TTFT
    quarter = len(errors) // 4
    first, last = statistics.fmean(errors[:quarter]), statistics.fmean(errors[-quarter:])
    assert last < 0.5 * first  # the built-in first guess is off; the learned fit is not
