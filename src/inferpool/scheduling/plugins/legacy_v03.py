"""legacy-v0.3-filter: the whole decision tree of the upstream v0.3.0 Endpoint Picker.

    Critical (priority > 0):
      queue < 128 on some endpoints?  yes → LoRA soft affinity (0.999) → least queue → least KV
                                      no  → least queue → can accept the adapter → least KV
    otherwise:
      some endpoint with queue ≤ 5 and KV ≤ 0.8?  yes → least queue → can accept the adapter → least KV
                                                  no  → shed (the caller answers 429)

A step that would leave nothing passes its input on, as in v0.3. One plugin rather than a
chain because the tree branches, which a linear filter list cannot express.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from pydantic import Field

from inferpool.scheduling.framework import ShedRequest
from inferpool.scheduling.plugins.filters import (
    can_accept_adapter,
    least_kv_cache,
    least_queue,
    lora_soft_affinity,
)
from inferpool.scheduling.plugins.params import Params
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint


class LegacyV03Params(Params):
    queueing_threshold_lora: int = Field(default=128, ge=0)
    lora_affinity_threshold: float = Field(default=0.999, ge=0.0, le=1.0)
    queue_threshold_critical: int = Field(default=5, ge=0)
    kv_cache_threshold: float = Field(default=0.8, ge=0.0)


@dataclass
class LegacyV03Filter:
    params: LegacyV03Params = field(default_factory=LegacyV03Params)
    name: str = "legacy-v0.3-filter"
    soft: bool = False
    rng: random.Random = field(default_factory=random.Random)

    def filter(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        p = self.params
        if req.priority > 0:
            low = [e for e in endpoints if e.metrics.waiting_queue_size < p.queueing_threshold_lora]
            if low:
                affine = lora_soft_affinity(req, low, p.lora_affinity_threshold, self.rng) or low
                return least_kv_cache(least_queue(affine))
            return self._queue_lora_kv(req, endpoints)
        capable = [
            e
            for e in endpoints
            if e.metrics.waiting_queue_size <= p.queue_threshold_critical
            and e.metrics.kv_cache_usage <= p.kv_cache_threshold
        ]
        if not capable:
            raise ShedRequest(
                f"no endpoint has queue <= {p.queue_threshold_critical} and KV cache <= {p.kv_cache_threshold}"
            )
        return self._queue_lora_kv(req, capable)

    @staticmethod
    def _queue_lora_kv(req: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        by_queue = least_queue(endpoints)
        return least_kv_cache(can_accept_adapter(req, by_queue) or by_queue)
