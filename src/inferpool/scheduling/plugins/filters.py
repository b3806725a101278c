"""Filters from the upstream v0.3 decision tree, usable on their own in any profile."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import Field

from inferpool.scheduling.plugins.lora_affinity import has_room
from inferpool.scheduling.plugins.params import Params
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint


def least_by(endpoints: list[Endpoint], value: Callable[[Endpoint], float]) -> list[Endpoint]:
    """Keep endpoints within (max − min) / n of the minimum (upstream's "least queuing" band)."""
    if not endpoints:
        return []
    values = [value(e) for e in endpoints]
    lo, hi = min(values), max(values)
    limit = lo + (hi - lo) / len(endpoints)
    return [e for e, v in zip(endpoints, values, strict=True) if v <= limit]


def least_queue(endpoints: list[Endpoint]) -> list[Endpoint]:
    return least_by(endpoints, lambda e: e.metrics.waiting_queue_size)


def least_kv_cache(endpoints: list[Endpoint]) -> list[Endpoint]:
    return least_by(endpoints, lambda e: e.metrics.kv_cache_usage)


def can_accept_adapter(req: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
    """Endpoints that have the adapter, or a free slot to load it (v0.3 "can accept LoRA")."""
    if req.lora_adapter is False:
        return list(endpoints)
    model = req.target_model
    return [
        e
        for e in endpoints
        if model in e.metrics.active_adapters or model in e.metrics.waiting_adapters or has_room(e.metrics)
    ]


def lora_soft_affinity(
    req: SchedulingRequest, endpoints: list[Endpoint], threshold: float, rng: random.Random
) -> list[Endpoint]:
    """Endpoints with the adapter present, with probability `threshold`, else those with room.

    The small chance of choosing "room" spreads a hot adapter to more replicas over time
    (v0.3's LoRA soft affinity, threshold 0.999). Empty when neither kind exists.
    """
    if req.lora_adapter is False:
        return list(endpoints)
    model = req.target_model
    present = [
        e for e in endpoints if model in e.metrics.active_adapters or model in e.metrics.waiting_adapters
    ]
    room = [e for e in endpoints if has_room(e.metrics) and e not in present]
    if present and room:
        return present if rng.random() < threshold else room
    return present or room


def adapter_loaded(req: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
    """Drop endpoints known NOT to have the requested adapter loaded (they would answer 404).

    Endpoints whose loaded set is unknown stay; base-model requests pass untouched.
    """
    if req.lora_adapter is False:
        return list(endpoints)
    model = req.target_model
    return [
        e
        for e in endpoints
        if e.metrics.loaded_adapters is None
        or model in e.metrics.loaded_adapters
        or model in e.metrics.active_adapters
    ]


@dataclass
class AdapterLoadedFilter:
    """Soft: when no endpoint has the adapter yet (a syncer is still loading it), keep all."""

    name: str = "adapter-loaded-filter"
    soft: bool = True

    def filter(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        return adapter_loaded(req, endpoints)


class QueueThresholdParams(Params):
    threshold: int = Field(default=128, ge=0, description="keep endpoints whose queue is below this")


@dataclass
class LowQueueFilter:
    params: QueueThresholdParams = field(default_factory=QueueThresholdParams)
    name: str = "low-queue-filter"
    soft: bool = True

    def filter(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        return [e for e in endpoints if e.metrics.waiting_queue_size < self.params.threshold]


@dataclass
class LeastQueueFilter:
    name: str = "least-queue-filter"
    soft: bool = False

    def filter(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        return least_queue(endpoints)


@dataclass
class LeastKVCacheFilter:
    name: str = "least-kv-cache-filter"
    soft: bool = False

    def filter(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        return least_kv_cache(endpoints)


class LoraAffinityFilterParams(Params):
    threshold: float = Field(
        default=0.999, ge=0.0, le=1.0, description="probability of preferring adapter-present endpoints"
    )


@dataclass
class LoraAffinityFilter:
    params: LoraAffinityFilterParams = field(default_factory=LoraAffinityFilterParams)
    name: str = "lora-affinity-filter"
    soft: bool = True
    rng: random.Random = field(default_factory=random.Random)

    def filter(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        return lora_soft_affinity(req, endpoints, self.params.threshold, self.rng)
