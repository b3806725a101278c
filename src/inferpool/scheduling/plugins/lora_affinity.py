"""lora-affinity-scorer: prefer endpoints that already serve the requested LoRA adapter.

vLLM reports adapters in `vllm:lora_requests_info{max_lora, running_lora_adapters,
waiting_lora_adapters}`, with two meanings over its history:

* old: `running` = adapters with requests in the running batch (loaded in a GPU slot),
  `waiting` = adapters with queued requests;
* new (≥ 0.11, as recorded from 0.32.0): both labels list the same set, every adapter
  with a scheduled unfinished request; an adapter whose requests are all still queued
  is listed nowhere.

The rule below is right under both: "active" = listed in `running` (loaded in both
meanings); "slots in use" = |running ∪ waiting| (in the old meaning waiting adapters
will claim a slot; in the new one the union is just the running set, so nothing is
counted twice); "waiting" only ever adds information in the old meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint, EndpointMetrics

ACTIVE = 1.0
ROOM = 0.8
WAITING = 0.6
NONE = 0.0


def has_room(metrics: EndpointMetrics) -> bool:
    """True when one more adapter can be loaded without evicting one."""
    in_use = len(metrics.active_adapters | metrics.waiting_adapters)
    if metrics.max_active_adapters <= 0:
        # No lora_requests_info sample yet (vLLM emits none before the first request):
        # assume the slots are free unless adapters are listed.
        return in_use == 0
    return in_use < metrics.max_active_adapters


def lora_affinity(adapter: str, metrics: EndpointMetrics) -> float:
    """1.0 adapter active, 0.8 room to load it, 0.6 it is queued there, 0 otherwise."""
    if adapter in metrics.active_adapters:
        return ACTIVE
    if has_room(metrics):
        return ROOM
    if adapter in metrics.waiting_adapters:
        return WAITING
    return NONE


@dataclass
class LoraAffinityScorer:
    """Scores `lora_affinity(req.target_model, metrics)`; neutral (1.0) for base-model requests."""

    name: str = "lora-affinity-scorer"

    def score(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> dict[Endpoint, float]:
        return dict(zip(endpoints, self.score_column(req, endpoints), strict=True))

    def score_column(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[float]:
        if req.lora_adapter is False:
            return [1.0] * len(endpoints)
        adapter = req.target_model
        # A server that lists no adapter has a free slot whatever max_lora says (see has_room).
        return [
            ROOM if not (m.active_adapters or m.waiting_adapters) else lora_affinity(adapter, m)
            for m in [e.metrics for e in endpoints]
        ]
