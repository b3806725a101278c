"""kv-cache-utilization-scorer: prefer endpoints with free KV-cache blocks."""

from __future__ import annotations

from dataclasses import dataclass

from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint


def _free(kv: float) -> float:
    if kv != kv:  # NaN from a broken scrape: treat as full
        return 0.0
    return min(1.0, max(0.0, 1.0 - kv))


@dataclass
class KVCacheUtilizationScorer:
    """score = 1 − kv_cache_usage (an absolute scale: a full cache is bad even if all are full)."""

    name: str = "kv-cache-utilization-scorer"

    def score(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> dict[Endpoint, float]:
        return {e: _free(e.metrics.kv_cache_usage) for e in endpoints}
