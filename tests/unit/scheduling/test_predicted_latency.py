"""predicted-latency-scorer: learns from outcomes, ranks by prediction, honours SLO headers, sheds."""

from __future__ import annotations

import pytest

from inferpool.records import RequestRecord
from inferpool.scheduling import ConfigError, ShedRequest, load_scheduler, parse_config
from inferpool.scheduling.config import build_scheduler
from inferpool.scheduling.framework import Profile, Scheduler, WeightedScorer
from inferpool.scheduling.plugins.max_score import MaxScorePicker
from inferpool.scheduling.plugins.predicted_latency import (
    PredictedLatencyParams,
    PredictedLatencyScorer,
    request_slo,
)
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint

from .conftest import ep, req

LONG = "".join(f"shared system prompt line {i:04d}, long enough to matter.\n" for i in range(300))  # ~17 KB


def outcome(
    status: int,
    ttft_s: float | None,
    e2e_s: float,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    cached_tokens: int | None,
) -> RequestRecord:
    """The record of a finished request, with the fields the latency model learns from."""
    return RequestRecord(
        request_id="r",
        pool="default/pool",
        model="m",
        target_model="m",
        status=status,
        started_at=0.0,
        e2e_s=e2e_s,
        ttft_s=ttft_s,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cached_tokens=cached_tokens,
    )


def observed_ttft(endpoint: Endpoint) -> float:
    """The law the test servers follow: 10 ms plus 40 ms per queued request."""
    return 0.010 + 0.040 * endpoint.metrics.waiting_queue_size


def serve(
    plugin: PredictedLatencyScorer,
    endpoint: Endpoint,
    request: SchedulingRequest | None = None,
    *,
    ttft: float | None = None,
    tokens: int = 11,
    status: int = 200,
) -> None:
    """One request through the hooks in the Director's order: score, routed, completed, finished."""
    request = request or req("a short question")
    plugin.score(request, [endpoint])
    plugin.on_routed(request, endpoint)
    plugin.on_completed(request, endpoint)
    first = observed_ttft(endpoint) if ttft is None else ttft
    plugin.on_finished(request, endpoint, outcome(status, first, first + 0.01 * (tokens - 1), 10, tokens, 0))


def trained(min_samples: int = 8, **params: object) -> PredictedLatencyScorer:
    plugin = PredictedLatencyScorer(PredictedLatencyParams(min_samples=min_samples, **params))  # type: ignore[arg-type]
    for i in range(200):
        serve(plugin, ep(f"e-{i % 3}", queue=i % 7))
    return plugin


def test_learns_the_law_and_prefers_the_endpoint_with_lower_predicted_ttft() -> None:
    plugin = trained()
    idle, busy = ep("e-0", queue=0), ep("e-1", queue=5)
    scores = plugin.score(req("hi"), [idle, busy])
    assert scores[idle] == 1.0 and scores[busy] < 0.2  # best/cost: 10 ms vs 210 ms
    assert plugin.last_predictions["e-0"].ttft_s == pytest.approx(0.010, abs=0.005)
    assert plugin.last_predictions["e-1"].ttft_s == pytest.approx(0.210, abs=0.01)
    assert plugin.last_predictions["e-1"].tpot_s == pytest.approx(0.010, abs=0.002)


def test_an_expected_prefix_hit_lowers_the_prediction_on_that_endpoint_only() -> None:
    plugin = PredictedLatencyScorer(PredictedLatencyParams(min_samples=1000))
    holder, other = ep("e-0"), ep("e-1")

    def law(request: SchedulingRequest) -> float:  # 0.1 ms per uncached token
        return 0.005 + 0.0001 * plugin.features(request, [holder])["e-0"].uncached_tokens

    for i in range(100):  # cold prompts of varied length, and warm ones (LONG is cached after the first)
        prompt = f"{i:05d} " + LONG[: 1000 + 150 * i] if i % 2 else LONG + f"question {i}"
        request = req(prompt, prompt_tokens_estimate=len(prompt) // 4)
        serve(plugin, holder, request, ttft=law(request))
    again = req(LONG + "question two", prompt_tokens_estimate=len(LONG) // 4)
    features = plugin.features(again, [holder, other])
    assert features["e-0"].uncached_tokens < 0.05 * features["e-1"].uncached_tokens
    scores = plugin.score(again, [holder, other])
    assert scores[holder] == 1.0 and scores[other] < 0.5
    assert plugin.last_predictions["e-1"].ttft_s > 5 * plugin.last_predictions["e-0"].ttft_s


def test_slo_headers_put_every_endpoint_that_meets_them_above_every_one_that_does_not() -> None:
    plugin = trained(slo_margin=0.0)
    eps = [ep("e-0", queue=0), ep("e-1", queue=1), ep("e-2", queue=3), ep("e-3", queue=6)]
    slo = {"x-slo-ttft-ms": "100"}  # met at queue 0 (10 ms) and 1 (50 ms), missed at 3 (130) and 6 (250)
    scores = plugin.score(req("hi", headers=slo), eps)
    meets, misses = [scores[e] for e in eps[:2]], [scores[e] for e in eps[2:]]
    assert min(meets) >= 0.5 > max(misses)
    assert scores[eps[0]] == 1.0  # default headroom "most": the fastest
    assert scores[eps[2]] > scores[eps[3]]  # among the misses, the closer one
    least = trained(slo_margin=0.0, headroom="least")
    packed = least.score(req("hi", headers=slo), eps)
    assert packed[eps[1]] == 1.0 and packed[eps[0]] < 1.0  # pack: the one just inside the SLO
    assert min(packed[e] for e in eps[:2]) >= 0.5 > max(packed[e] for e in eps[2:])


def test_tpot_slo_counts_too_and_the_margin_makes_the_check_stricter() -> None:
    plugin = trained(slo_margin=0.0)
    idle = ep("e-0")
    assert plugin.score(req("hi", headers={"x-slo-tpot-ms": "5"}), [idle])[idle] < 0.5  # TPOT is 10 ms
    assert plugin.score(req("hi", headers={"x-slo-tpot-ms": "20"}), [idle])[idle] >= 0.5
    # The residuals are tiny here, so inflate the margin to push 50 ms past a 60 ms SLO.
    strict = trained(slo_margin=1e6)
    one = ep("e-0", queue=1)
    assert strict.score(req("hi", headers={"x-slo-ttft-ms": "60"}), [one])[one] < 0.5


def test_sheddable_request_is_shed_when_no_endpoint_is_predicted_to_meet_its_slo() -> None:
    plugin = trained(slo_margin=0.0)
    scheduler = Scheduler(Profile("slo", [], [WeightedScorer(plugin, 1.0)], MaxScorePicker()))
    eps = [ep("e-0", queue=4), ep("e-1", queue=6)]  # 170 ms and 250 ms
    slo = {"x-slo-ttft-ms": "100"}
    shed = scheduler.schedule(req("hi", headers=slo, priority=-1), eps)
    assert shed.shed and shed.ranked == []
    assert shed.filtered_out["e-0"].startswith("predicted-latency-scorer: no endpoint is predicted to meet")
    with pytest.raises(ShedRequest):
        plugin.score(req("hi", headers=slo, priority=-1), eps)
    # Standard and critical requests still go, to the best predicted endpoint.
    served = scheduler.schedule(req("hi", headers=slo, priority=0), eps)
    assert not served.shed and served.ranked[0].endpoint is eps[0]
    # A sheddable request that fits somewhere is not shed.
    fits = scheduler.schedule(req("hi", headers=slo, priority=-1), [*eps, ep("e-2", queue=0)])
    assert not fits.shed and fits.ranked[0].endpoint.name == "e-2"


def test_cold_start_uses_the_pool_prior_until_the_endpoint_has_its_own_samples() -> None:
    plugin = PredictedLatencyScorer(PredictedLatencyParams(min_samples=20))
    first = ep("e-0", queue=2)
    plugin.score(req("hi"), [first])
    assert plugin.last_predictions["e-0"].from_prior  # nothing learned yet: the built-in guess
    for i in range(40):
        serve(plugin, ep("e-0", queue=i % 5))
    newcomer = ep("e-9", queue=2)
    for _ in range(5):
        serve(plugin, newcomer, ttft=1.0)  # a slow server, but too few samples to trust yet
    plugin.score(req("hi"), [ep("e-0", queue=2), newcomer])
    own, fresh = plugin.last_predictions["e-0"], plugin.last_predictions["e-9"]
    assert not own.from_prior and fresh.from_prior
    assert fresh.ttft_s < 0.3  # the pool's law (90 ms), not the newcomer's 1 s
    for _ in range(20):
        serve(plugin, newcomer, ttft=1.0)
    plugin.score(req("hi"), [newcomer])
    assert not plugin.last_predictions["e-9"].from_prior
    assert plugin.last_predictions["e-9"].ttft_s > 0.8  # its own model now: it is slow


def test_failed_and_tokenless_outcomes_teach_nothing() -> None:
    plugin = PredictedLatencyScorer(PredictedLatencyParams(min_samples=0))
    e = ep("e-0")
    serve(plugin, e, status=500, ttft=9.0)
    request = req("x")
    plugin.score(request, [e])
    plugin.on_routed(request, e)
    plugin.on_completed(request, e)
    plugin.on_finished(request, e, outcome(200, None, 1.0, None, None, None))
    assert plugin.prior.samples == 0 and "e-0" not in plugin.models
    serve(plugin, e, tokens=1)  # one token: a TTFT sample, no TPOT
    assert plugin.prior.ttft.samples == 1 and plugin.prior.tpot.samples == 0


def test_outcome_from_another_endpoint_than_the_one_recorded_is_ignored() -> None:
    plugin = PredictedLatencyScorer()
    a, b = ep("e-0"), ep("e-1")
    request = req("x")
    plugin.score(request, [a, b])
    plugin.on_routed(request, a)
    plugin.on_completed(request, a)
    plugin.on_finished(request, b, outcome(200, 0.1, 0.2, 1, 5, 0))
    assert plugin.prior.samples == 0


def test_retry_on_a_fallback_learns_with_the_fallbacks_features() -> None:
    plugin = PredictedLatencyScorer()
    a, b = ep("e-0", queue=9), ep("e-1", queue=0)
    request = req("x")
    plugin.score(request, [a, b])
    plugin.on_routed(request, a)
    plugin.on_completed(request, a)  # a failed; the data plane retries on b
    b.in_flight = 1  # the Director counts it before the hook
    plugin.on_routed(request, b)
    plugin.on_completed(request, b)
    assert plugin._completed[request.request_id].endpoint == "e-1"
    assert plugin._completed[request.request_id].features.in_flight == 0  # as scoring would see it
    plugin.on_finished(request, b, outcome(200, 0.1, 0.2, 1, 5, 0))
    assert plugin.prior.samples == 1 and "e-1" in plugin.models


def test_requests_that_never_report_an_outcome_do_not_leak() -> None:
    plugin = PredictedLatencyScorer()
    e = ep("e-0")
    for i in range(3000):  # routed and completed, no on_finished (a hook-less data plane)
        request = req(f"prompt {i}")
        plugin.score(request, [e])
        plugin.on_routed(request, e)
        plugin.on_completed(request, e)
    for i in range(6000):  # scored, never routed (shed later, client gone): nothing kept per request
        plugin.score(req(f"orphan {i}"), [e])
    assert plugin.tracked_requests <= 1024
    assert not plugin._in_flight
    assert len(plugin._prefix._pending) <= 4096  # the prefix scorer's own bound on hashes awaiting routing
    plugin.on_endpoint_removed("e-0")
    assert "e-0" not in plugin.models and plugin._prefix.index.size() == 0


def test_request_slo_parses_milliseconds_and_ignores_junk() -> None:
    assert request_slo(req("x")) is None
    slo = request_slo(req("x", headers={"x-slo-ttft-ms": "250", "x-slo-tpot-ms": "12.5"}))
    assert slo is not None and slo.ttft_s == 0.25 and slo.tpot_s == 0.0125
    assert request_slo(req("x", headers={"x-slo-ttft-ms": "soon"})) is None
    assert request_slo(req("x", headers={"x-slo-ttft-ms": "-5", "x-slo-tpot-ms": "nan"})) is None


def test_config_builds_it_validates_params_and_ships_the_slo_aware_profile() -> None:
    scheduler = load_scheduler("slo-aware")
    names = [w.scorer.name for w in scheduler.profile.scorers]
    assert "predicted-latency-scorer" in names
    text = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: predicted-latency-scorer
  parameters: {minSamples: 5, forgetting: 0.99, headroom: least, sloMargin: 0.5,
               prefixCache: {hashBlockSize: 32}}
schedulingProfiles:
- name: p
  plugins: [{pluginRef: predicted-latency-scorer}]
"""
    built = build_scheduler(parse_config(text))
    plugin = built.profile.scorers[0].scorer
    assert isinstance(plugin, PredictedLatencyScorer)
    assert plugin.params.headroom == "least" and plugin.params.prefix_cache.hash_block_size == 32
    bad = text.replace("forgetting: 0.99", "forgetting: 1.5").replace("headroom: least", "headroom: some")
    with pytest.raises(ConfigError) as err:
        build_scheduler(parse_config(bad))
    assert any("forgetting" in p for p in err.value.problems)
    assert any("headroom" in p for p in err.value.problems)


def test_an_endpoint_left_idle_drifts_back_to_the_pool_model() -> None:
    plugin = PredictedLatencyScorer(PredictedLatencyParams(min_samples=5, forgetting=0.98))
    slow, other = ep("e-0"), ep("e-1")
    for _ in range(30):
        serve(plugin, slow, ttft=2.0)  # a bad spell: its calibration says "slow"
    plugin.score(req("hi"), [slow])
    assert plugin.last_predictions["e-0"].ttft_s > 1.5
    for i in range(400):  # it gets no traffic, so no sample could correct it; the pool keeps learning
        serve(plugin, ep("e-1", queue=i % 3))
    plugin.score(req("hi"), [slow, other])
    assert plugin.last_predictions["e-0"].ttft_s < 0.2  # back near the pool's law, so it gets tried again


def test_adapter_cold_marks_lora_requests_where_the_adapter_is_not_active() -> None:
    plugin = PredictedLatencyScorer()
    warm, cold = ep("e-0", active_adapters=frozenset({"a1"})), ep("e-1")
    lora = plugin.features(req("x", model="a1", lora_adapter=True), [warm, cold])
    assert not lora["e-0"].adapter_cold and lora["e-1"].adapter_cold
    for known in (False, None):  # the base model, or unknown (base not configured): never cold
        base = plugin.features(req("x", model="base", lora_adapter=known), [warm, cold])
        assert not base["e-0"].adapter_cold and not base["e-1"].adapter_cold
