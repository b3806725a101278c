"""The scheduler as it was before the column fast path, kept as an oracle for equivalence tests.

Filtering, scoring, weighting and picking are copied from the per-endpoint-dict implementation
(commit f902594): every scorer answers a dict, the framework clamps and sums it per
endpoint, and the picker orders `ScoredEndpoint`s. Filter plugins, the prefix index
and lifecycle hooks are the real ones: their code did not change.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from operator import mul

from inferpool.scheduling import Scheduler, SchedulingRequest, SchedulingResult, ScoredEndpoint, ShedRequest
from inferpool.scheduling.plugins.kv_cache import KVCacheUtilizationScorer
from inferpool.scheduling.plugins.least_request import LeastRequestScorer
from inferpool.scheduling.plugins.lora_affinity import LoraAffinityScorer, lora_affinity
from inferpool.scheduling.plugins.max_score import MaxScorePicker
from inferpool.scheduling.plugins.prefix_cache import PrefixCacheScorer, overloaded
from inferpool.scheduling.plugins.queue import QueueScorer
from inferpool.scheduling.plugins.random_picker import RandomPicker
from inferpool.scheduling.plugins.round_robin import RoundRobinPicker
from inferpool.scheduling.plugins.running import RunningRequestsScorer
from inferpool.scheduling.plugins.token_load import TokenLoadScorer
from inferpool.scheduling.plugins.weighted_random import WeightedRandomPicker
from inferpool.state import Endpoint


def _inverse_minmax(endpoints: Sequence[Endpoint], values: Sequence[float]) -> dict[Endpoint, float]:
    lo = min(values, default=0.0)
    hi = max(values, default=0.0)
    span = hi - lo
    if not span > 0:
        return dict.fromkeys(endpoints, 1.0)
    return {e: (hi - v) / span for e, v in zip(endpoints, values, strict=True)}


def _prefix(
    scorer: PrefixCacheScorer, req: SchedulingRequest, endpoints: list[Endpoint]
) -> dict[Endpoint, float]:
    hashes = scorer.hashes(req)
    if not hashes or not endpoints:
        return dict.fromkeys(endpoints, 0.0)
    matched = scorer.index.match(hashes)
    total = len(hashes)
    loads = [e.metrics.waiting_queue_size + e.in_flight for e in endpoints]
    least = min(loads)
    scores: dict[Endpoint, float] = {}
    for endpoint, load in zip(endpoints, loads, strict=True):
        hits = matched.get(endpoint.name, 0)
        if hits and overloaded(load, least, endpoint.metrics.kv_cache_usage, scorer.params):
            hits = 0
        scores[endpoint] = hits / total
    return scores


def reference_scores(
    scorer: object, req: SchedulingRequest, endpoints: list[Endpoint]
) -> dict[Endpoint, float]:
    """What a built-in scorer's `score` answered before; other scorers are asked as they are."""
    if isinstance(scorer, QueueScorer):
        return _inverse_minmax(endpoints, [e.metrics.waiting_queue_size for e in endpoints])
    if isinstance(scorer, RunningRequestsScorer):
        return _inverse_minmax(endpoints, [e.metrics.running_requests for e in endpoints])
    if isinstance(scorer, LeastRequestScorer):
        return _inverse_minmax(endpoints, [e.in_flight for e in endpoints])
    if isinstance(scorer, TokenLoadScorer):
        return _inverse_minmax(endpoints, [e.in_flight_tokens for e in endpoints])
    if isinstance(scorer, KVCacheUtilizationScorer):
        return {
            e: 1.0 - kv if 0.0 <= kv <= 1.0 else (1.0 if kv < 0.0 else 0.0)
            for e, kv in ((e, e.metrics.kv_cache_usage) for e in endpoints)
        }
    if isinstance(scorer, LoraAffinityScorer):
        if req.lora_adapter is False:
            return dict.fromkeys(endpoints, 1.0)
        return {e: lora_affinity(req.target_model, e.metrics) for e in endpoints}
    if isinstance(scorer, PrefixCacheScorer):
        return _prefix(scorer, req, endpoints)
    return scorer.score(req, endpoints)  # type: ignore[attr-defined, no-any-return]


def reference_pick(picker: object, scored: list[ScoredEndpoint]) -> list[ScoredEndpoint]:
    """What a built-in picker's `pick` answered before, drawing from the same generator."""
    if isinstance(picker, MaxScorePicker):
        rand = picker.rng.random
        keyed = sorted(((s.total, rand(), i) for i, s in enumerate(scored)), reverse=True)
        return [scored[i] for _, _, i in keyed]
    if isinstance(picker, RandomPicker):
        ordered = list(scored)
        picker.rng.shuffle(ordered)
        return ordered
    if isinstance(picker, RoundRobinPicker):
        if not scored:
            return []
        by_name = sorted(scored, key=lambda s: s.endpoint.name)
        start = picker._next % len(by_name)
        picker._next += 1
        return by_name[start:] + by_name[:start]
    if isinstance(picker, WeightedRandomPicker):
        rand = picker.rng.random
        top = max((s.total for s in scored), default=0.0)
        keys = []
        for i, s in enumerate(scored):
            u = 1.0 - rand()
            weight = s.total / top if top > 0 else 0.0
            keys.append((0, math.log(u) / weight, i) if weight > 0 else (-1, u, i))
        keys.sort(reverse=True)
        return [scored[i] for _, _, i in keys]
    return picker.pick(scored)  # type: ignore[attr-defined, no-any-return]


class ReferenceScheduler(Scheduler):
    """A Scheduler whose `schedule` is the old one; hooks, subset and shedding are inherited."""

    def schedule(self, req: SchedulingRequest, candidates: Sequence[Endpoint]) -> SchedulingResult:
        start = time.perf_counter()
        filtered_out: dict[str, str] = {}
        endpoints = self._apply_subset(req, candidates, filtered_out)
        for flt in self.profile.filters:
            if not endpoints:
                break
            try:
                kept = flt.filter(req, endpoints)
            except ShedRequest as shed:
                return self._shed(endpoints, f"{flt.name}: {shed.reason}", filtered_out, start)
            if not kept and flt.soft:
                continue
            if len(kept) != len(endpoints):
                keep = set(kept)
                for endpoint in endpoints:
                    if endpoint not in keep:
                        filtered_out[endpoint.name] = flt.name
            endpoints = kept
        try:
            scored = self._reference_score(req, endpoints) if endpoints else []
        except ShedRequest as shed:
            return self._shed(endpoints, shed.reason, filtered_out, start)
        ranked = reference_pick(self.profile.picker, scored) if scored else []
        return SchedulingResult(self.profile.name, ranked, filtered_out, time.perf_counter() - start)

    def _reference_score(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[ScoredEndpoint]:
        scorers = self.profile.scorers
        if not scorers:
            return [ScoredEndpoint(e, 0.0, {}) for e in endpoints]
        names = [w.scorer.name for w in scorers]
        weights = [w.weight for w in scorers]
        columns = []
        for w in scorers:
            try:
                get = reference_scores(w.scorer, req, endpoints).get
            except ShedRequest as shed:
                raise ShedRequest(f"{w.scorer.name}: {shed.reason}") from None
            columns.append(
                [
                    v if 0.0 <= v <= 1.0 else (1.0 if v > 1.0 else 0.0)
                    for v in (get(e, 0.0) for e in endpoints)
                ]
            )
        return [
            ScoredEndpoint(e, sum(map(mul, weights, values)), dict(zip(names, values, strict=True)))
            for e, *values in zip(endpoints, *columns, strict=True)
        ]


def seed_plugins(scheduler: Scheduler, seed: str) -> None:
    """Give every random-drawing plugin its own generator, seeded from `seed` and its place."""
    for i, plugin in enumerate(scheduler.profile.plugins()):
        if isinstance(getattr(plugin, "rng", None), random.Random):
            plugin.rng = random.Random(f"{seed}:{i}")  # type: ignore[attr-defined]
