"""predicted-latency-scorer: send each request where it is predicted to be served best.

For every candidate it predicts this request's TTFT and TPOT from the endpoint's state and the
request's shape (`latency_model.LatencyFeatures`), with linear models learned online from the
latencies this gateway observed (`on_finished`) on every endpoint of the pool. Once an endpoint
has `minSamples` samples, its own two-weight calibration of the pool's prediction
(`latency_model.EndpointCalibration`) corrects it for that endpoint (a slower GPU, a farther
network); until then the pool model answers alone. The expected prefix-cache hit comes from an
approximate prefix index like `prefix-cache-scorer`'s (an instance of its own, fed by
this plugin's `on_routed`).

Without SLO headers the score is best predicted TTFT / this endpoint's (the best gets 1).
TPOT is not in that ranking: a request's own TPOT favours the least busy endpoint whatever its
cache holds, which spread load like least-request and lost the prefix hits that keep the whole
pool fast (virtual time; docs/scheduling.md). With `x-slo-ttft-ms` and/or `x-slo-tpot-ms`,
endpoints predicted to meet every given SLO (prediction + `sloMargin` × the model's typical
error) score in [0.5, 1] and the others in [0, 0.49]; among those that meet it the lowest
predicted TTFT gets 1 (`headroom: most`), or the one closest to its bound (`headroom: least`).
When no endpoint is predicted to meet it, a sheddable request (priority < 0) is shed (429) and
any other goes to the best predicted endpoint.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from inferpool.records import RequestRecord
from inferpool.scheduling.framework import ShedRequest
from inferpool.scheduling.latency_model import EndpointCalibration, LatencyFeatures, LatencyModel, Prediction
from inferpool.scheduling.plugins.params import Params
from inferpool.scheduling.plugins.prefix_cache import PrefixCacheParams, PrefixCacheScorer
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint

SLO_TTFT_HEADER = "x-slo-ttft-ms"
SLO_TPOT_HEADER = "x-slo-tpot-ms"

# Bounds on per-request bookkeeping, whatever the hooks do: requests routed but never completed,
# completed but never reported.
_IN_FLIGHT_LIMIT = 65536
_COMPLETED_LIMIT = 1024
# Endpoints predicted to meet the SLO score in [_MEETS, 1], the others in [0, _MISSES_TOP].
_MEETS = 0.5
_MISSES_TOP = 0.49


class PredictedLatencyParams(Params):
    min_samples: int = Field(
        default=20,
        ge=0,
        description="samples an endpoint needs before its calibration of the pool model is used",
    )
    forgetting: float = Field(
        default=0.995, gt=0.0, le=1.0, description="per-sample discount of old samples (memory ≈ 1/(1−λ))"
    )
    prior_variance: float = Field(
        default=1.0, gt=0.0, description="how far data may move a weight from its first guess"
    )
    headroom: Literal["most", "least"] = Field(
        default="most", description="among endpoints meeting the SLO: spread (most) or pack (least)"
    )
    slo_margin: float = Field(
        default=1.0, ge=0.0, description="model errors added to a prediction before comparing it to an SLO"
    )
    # Deeper than prefix-cache-scorer's default (256 blocks ≈ 4k tokens): the hit length is a
    # latency feature here, and long shared system prompts are where it matters most.
    prefix_cache: PrefixCacheParams = Field(
        default_factory=lambda: PrefixCacheParams(max_prefix_blocks_to_match=1024)
    )


@dataclass(frozen=True, slots=True)
class Slo:
    ttft_s: float | None
    tpot_s: float | None


def request_slo(req: SchedulingRequest) -> Slo | None:
    """The request's SLO headers in seconds; None when it has none (or only unparsable ones)."""
    ttft = _millis(req.headers.get(SLO_TTFT_HEADER))
    tpot = _millis(req.headers.get(SLO_TPOT_HEADER))
    return None if ttft is None and tpot is None else Slo(ttft, tpot)


def _millis(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        ms = float(value)
    except ValueError:
        return None
    return ms / 1000.0 if math.isfinite(ms) and ms > 0 else None


@dataclass
class _Routed:
    endpoint: str
    features: LatencyFeatures


@dataclass
class PredictedLatencyScorer:
    params: PredictedLatencyParams = field(default_factory=PredictedLatencyParams)
    name: str = "predicted-latency-scorer"
    prior: LatencyModel = field(init=False)  # the pool model, trained on every endpoint's samples
    models: dict[str, EndpointCalibration] = field(default_factory=dict)  # endpoint name -> its calibration
    # The predictions of the last scored request, endpoint name -> Prediction (for logs and debugging).
    last_predictions: dict[str, Prediction] = field(default_factory=dict)
    _prefix: PrefixCacheScorer = field(init=False)
    _in_flight: OrderedDict[str, _Routed] = field(default_factory=OrderedDict)
    _completed: OrderedDict[str, _Routed] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.prior = LatencyModel(
            forgetting=self.params.forgetting, prior_variance=self.params.prior_variance
        )
        self._prefix = PrefixCacheScorer(params=self.params.prefix_cache, name=f"{self.name}/prefix")

    # -- prediction ------------------------------------------------------------------
    def features(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> dict[str, LatencyFeatures]:
        """Each candidate's features for this request, as the scorer sees them before routing."""
        hashes = self._prefix.hashes(req)
        matched = self._prefix.index.match(hashes) if hashes else {}
        prompt_tokens = float(req.prompt_tokens_estimate)
        chars = max(len(req.prompt), 1)
        block_chars = self.params.prefix_cache.hash_block_size
        # Unknown (None) counts as the base model here: when the base is not configured, every
        # base-model request would otherwise look like a cold adapter.
        adapter = req.lora_adapter is True
        out: dict[str, LatencyFeatures] = {}
        for e in endpoints:
            m = e.metrics
            hit = min(matched.get(e.name, 0) * block_chars / chars, 1.0)
            out[e.name] = LatencyFeatures(
                uncached_tokens=prompt_tokens * (1.0 - hit),
                prompt_tokens=prompt_tokens,
                waiting=m.waiting_queue_size,
                running=m.running_requests,
                kv_usage=m.kv_cache_usage if math.isfinite(m.kv_cache_usage) else 1.0,
                in_flight=e.in_flight,
                adapter_cold=adapter and req.target_model not in m.active_adapters,
            )
        return out

    def predict(self, endpoint: str, features: LatencyFeatures) -> Prediction:
        pool = self.prior.predict(features.vector(), from_prior=True)
        own = self.models.get(endpoint)
        if own is None or own.samples < self.params.min_samples:
            return pool
        # Samples the pool learned since this endpoint's last one, per endpoint: how many it
        # would have seen with a fair share of the traffic. Its calibration fades at the
        # models' own forgetting rate over them.
        missed = (self.prior.samples - own.last_seen) / max(len(self.models), 1)
        return own.predict(pool, trust=self.params.forgetting**missed)

    def score(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> dict[Endpoint, float]:
        if not endpoints:
            return {}
        features = self.features(req, endpoints)
        predictions = {e.name: self.predict(e.name, features[e.name]) for e in endpoints}
        self.last_predictions = predictions
        cost = {e: predictions[e.name].ttft_s for e in endpoints}
        slo = request_slo(req)
        if slo is None:
            return _relative(cost, 0.0, 1.0)
        margin = self.params.slo_margin
        meets = [e for e in endpoints if _meets(predictions[e.name], slo, margin)]
        if not meets:
            if req.priority < 0:
                best = min(predictions.values(), key=lambda p: p.ttft_s)
                raise ShedRequest(
                    f"no endpoint is predicted to meet the SLO (best predicted TTFT {best.ttft_s * 1000:.0f} ms)"
                )
            return _relative(cost, 0.0, _MISSES_TOP)
        meeting = set(meets)
        misses = [e for e in endpoints if e not in meeting]
        scores = _relative({e: cost[e] for e in misses}, 0.0, _MISSES_TOP) if misses else {}
        if self.params.headroom == "most":
            scores.update(_relative({e: cost[e] for e in meets}, _MEETS, 1.0))
        else:
            # Least headroom first: keep the fastest endpoints free for requests with tighter SLOs.
            slack = {e: _headroom(predictions[e.name], slo, margin) for e in meets}
            scores.update(_relative(slack, _MEETS, 1.0))
        return scores

    # -- learning --------------------------------------------------------------------
    def on_routed(self, req: SchedulingRequest, endpoint: Endpoint) -> None:
        # The state it was sent into (after any wait since scoring), read before the prefix index
        # records this prompt there; the Director counts the request in flight before this hook,
        # and scoring saw the endpoint without it.
        features = self.features(req, [endpoint])[endpoint.name]
        features = dataclasses.replace(features, in_flight=max(endpoint.in_flight - 1, 0))
        self._prefix.on_routed(req, endpoint)
        self._in_flight[req.request_id] = _Routed(endpoint.name, features)
        self._in_flight.move_to_end(req.request_id)
        while len(self._in_flight) > _IN_FLIGHT_LIMIT:
            self._in_flight.popitem(last=False)

    def on_completed(self, req: SchedulingRequest, endpoint: Endpoint) -> None:
        """Released on every exit path; the outcome (on_finished) may follow, so keep the features a while."""
        self._prefix.on_completed(req, endpoint)
        routed = self._in_flight.pop(req.request_id, None)
        if routed is None:
            return
        self._completed[req.request_id] = routed
        while len(self._completed) > _COMPLETED_LIMIT:
            self._completed.popitem(last=False)

    def on_finished(self, req: SchedulingRequest, endpoint: Endpoint, record: RequestRecord) -> None:
        routed = self._completed.pop(req.request_id, None) or self._in_flight.get(req.request_id)
        if routed is None or routed.endpoint != endpoint.name:
            return
        if record.status != 200 or record.ttft_s is None:
            return
        tpot = None
        tokens = record.completion_tokens
        if tokens is not None and tokens >= 2:
            tpot = (record.e2e_s - record.ttft_s) / (tokens - 1)
        x = routed.features.vector()
        own = self.models.get(endpoint.name)
        if own is None:
            p = self.params
            own = self.models[endpoint.name] = EndpointCalibration(
                forgetting=p.forgetting, prior_variance=p.prior_variance
            )
        own.learn(self.prior.predict(x), record.ttft_s, tpot)  # before the pool learns this sample
        self.prior.learn(x, record.ttft_s, tpot)
        own.last_seen = self.prior.samples

    def on_endpoint_removed(self, name: str) -> None:
        self.models.pop(name, None)
        self._prefix.on_endpoint_removed(name)

    # -- bookkeeping -----------------------------------------------------------------
    @property
    def tracked_requests(self) -> int:
        """Requests whose features are held (in flight, or awaiting an outcome): bounded."""
        return len(self._in_flight) + len(self._completed)


def _meets(p: Prediction, slo: Slo, margin: float) -> bool:
    if slo.ttft_s is not None and p.ttft_s + margin * p.ttft_std_s > slo.ttft_s:
        return False
    return slo.tpot_s is None or p.tpot_s + margin * p.tpot_std_s <= slo.tpot_s


def _headroom(p: Prediction, slo: Slo, margin: float) -> float:
    """The tighter of the two relative slacks (0 = exactly at the SLO); lower = packed tighter."""
    slack = []
    if slo.ttft_s is not None:
        slack.append(1.0 - (p.ttft_s + margin * p.ttft_std_s) / slo.ttft_s)
    if slo.tpot_s is not None:
        slack.append(1.0 - (p.tpot_s + margin * p.tpot_std_s) / slo.tpot_s)
    return min(slack)


def _relative(cost: dict[Endpoint, float], low: float, high: float) -> dict[Endpoint, float]:
    """Map costs to [low, high] by best/cost: the cheapest gets `high`, twice its cost gets half way."""
    if not cost:
        return {}
    floor = 1e-6  # a predicted 0 (cold model, clamped fit) must not divide by zero
    best = max(min(cost.values()), floor)
    span = high - low
    return {e: low + span * best / max(c, floor) for e, c in cost.items()}
