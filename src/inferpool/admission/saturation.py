"""Saturation: how full an endpoint, and a pool, is, from the scraped metrics.

Per endpoint: ratio = max(waiting_queue / queue_threshold, kv_cache_usage / kv_threshold).
It is saturated when ratio >= 1, or when its metrics are older than `stale_after_s`
(never scraped counts as stale): what we cannot see, we must not pile onto.

Per pool (the endpoints a request could go to): ratio = mean over them of
min(ratio_i, ratio_cap), where a stale endpoint counts as exactly 1.0 (full, but not
overloaded). The pool is saturated when that mean is >= 1. The cap keeps one badly
overloaded replica from making a pool with idle replicas look saturated, and the 1.0
for stale endpoints means a stalled scraper alone sheds Sheddable traffic but never
pushes the pool past the Standard ceiling (see admit.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from inferpool.state import Endpoint


@dataclass(frozen=True)
class SaturationConfig:
    queue_threshold: float = 5.0  # waiting requests at which an endpoint is full
    kv_threshold: float = 0.8  # KV-cache fraction at which an endpoint is full
    stale_after_s: float = 2.0  # metrics older than this make an endpoint count as saturated
    ratio_cap: float = 2.0  # per-endpoint ratio is capped at this in the pool mean
    stale_ratio: float = 1.0  # what a stale endpoint contributes to the pool mean


# a Struct: built per request, and faster to build than a frozen dataclass
class SaturationSnapshot(msgspec.Struct, frozen=True):
    """The pool's saturation at one instant, kept on records for the dashboard."""

    ratio: float  # pool mean as defined above; 0 for an empty set
    endpoints: int
    saturated: int  # endpoints with ratio >= 1 or stale
    stale: int

    @property
    def pool_saturated(self) -> bool:
        return self.endpoints > 0 and self.ratio >= 1.0

    @property
    def all_saturated(self) -> bool:
        return self.endpoints > 0 and self.saturated == self.endpoints


class SaturationDetector:
    """Computes saturation from endpoint metrics; pure reads, O(endpoints)."""

    def __init__(self, config: SaturationConfig | None = None, clock: Callable[[], float] = time.monotonic):
        self.config = config or SaturationConfig()
        self._clock = clock

    def is_stale(self, endpoint: Endpoint, now: float | None = None) -> bool:
        return endpoint.metrics.age(self._clock() if now is None else now) > self.config.stale_after_s

    def load_ratio(self, endpoint: Endpoint) -> float:
        """max(queue/queue_threshold, kv/kv_threshold), ignoring staleness."""
        m = endpoint.metrics
        return max(
            m.waiting_queue_size / self.config.queue_threshold, m.kv_cache_usage / self.config.kv_threshold
        )

    def endpoint_saturated(self, endpoint: Endpoint, now: float | None = None) -> bool:
        return self.is_stale(endpoint, now) or self.load_ratio(endpoint) >= 1.0

    def snapshot(
        self,
        endpoints: Sequence[Endpoint],
        now: float | None = None,
        waiting: Callable[[Endpoint], int] | None = None,
    ) -> SaturationSnapshot:
        """The pool's saturation; `waiting(e)`, when given, replaces the scraped waiting queue of `e`."""
        now = self._clock() if now is None else now
        cfg = self.config
        # Inlined, without per-endpoint method or builtin calls (`y if y > x else x` is exactly
        # `max(x, y)`, NaN included): this runs on every request over every candidate.
        oldest = now - cfg.stale_after_s
        queue_t, kv_t, cap, stale_ratio = (
            cfg.queue_threshold,
            cfg.kv_threshold,
            cfg.ratio_cap,
            cfg.stale_ratio,
        )
        total = 0.0
        saturated = stale = 0
        for endpoint in endpoints:
            m = endpoint.metrics
            scraped = m.scraped_at
            if scraped == 0.0 or scraped < oldest:
                stale += 1
                saturated += 1
                total += stale_ratio
                continue
            by_queue = (m.waiting_queue_size if waiting is None else waiting(endpoint)) / queue_t
            by_kv = m.kv_cache_usage / kv_t
            ratio = by_kv if by_kv > by_queue else by_queue
            if ratio >= 1.0:
                saturated += 1
            total += ratio if ratio < cap else cap
        count = len(endpoints)
        return SaturationSnapshot(
            ratio=total / count if count else 0.0, endpoints=count, saturated=saturated, stale=stale
        )

    def pool_saturated(self, endpoints: Sequence[Endpoint], now: float | None = None) -> bool:
        return self.snapshot(endpoints, now).pool_saturated
