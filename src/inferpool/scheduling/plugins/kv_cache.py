"""kv-cache-utilization-scorer: prefer endpoints with free KV-cache blocks."""

from __future__ import annotations

from dataclasses import dataclass

from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint


@dataclass
class KVCacheUtilizationScorer:
    """score = 1 − kv_cache_usage (an absolute scale: a full cache is bad even if all are full)."""

    name: str = "kv-cache-utilization-scorer"

    def score(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> dict[Endpoint, float]:
        return dict(zip(endpoints, self.score_column(req, endpoints), strict=True))

    def score_column(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[float]:
        # out-of-range or NaN usage (a broken scrape) clamps; NaN fails both comparisons → 0
        return [
            1.0 - kv if 0.0 <= kv <= 1.0 else (1.0 if kv < 0.0 else 0.0)
            for kv in [e.metrics.kv_cache_usage for e in endpoints]
        ]
