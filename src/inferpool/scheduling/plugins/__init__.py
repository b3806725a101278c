"""The plugin registry: EndpointPickerConfig `type` name → how to build that plugin."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from inferpool.scheduling.plugins.approx_prefix import ApproxPrefixProducerParams
from inferpool.scheduling.plugins.filters import (
    AdapterLoadedFilter,
    LeastKVCacheFilter,
    LeastQueueFilter,
    LoraAffinityFilter,
    LoraAffinityFilterParams,
    LowQueueFilter,
    QueueThresholdParams,
)
from inferpool.scheduling.plugins.kv_cache import KVCacheUtilizationScorer
from inferpool.scheduling.plugins.least_request import LeastRequestScorer
from inferpool.scheduling.plugins.legacy_v03 import LegacyV03Filter, LegacyV03Params
from inferpool.scheduling.plugins.lora_affinity import LoraAffinityScorer
from inferpool.scheduling.plugins.max_score import MaxScorePicker
from inferpool.scheduling.plugins.params import NoParams, Params
from inferpool.scheduling.plugins.pd_decider import (
    AlwaysDisaggPDDecider,
    PrefixBasedPDDecider,
    PrefixBasedPDDeciderParams,
)
from inferpool.scheduling.plugins.precise_prefix import PrecisePrefixCacheScorer, PrecisePrefixParams
from inferpool.scheduling.plugins.predicted_latency import PredictedLatencyParams, PredictedLatencyScorer
from inferpool.scheduling.plugins.prefix_cache import PrefixCacheParams, PrefixCacheScorer
from inferpool.scheduling.plugins.profile_handler import DisaggProfileHandlerParams, PdProfileHandlerParams
from inferpool.scheduling.plugins.queue import QueueScorer
from inferpool.scheduling.plugins.random_picker import RandomPicker
from inferpool.scheduling.plugins.roles import DecodeFilter, PrefillFilter
from inferpool.scheduling.plugins.round_robin import RoundRobinPicker
from inferpool.scheduling.plugins.running import RunningRequestsScorer
from inferpool.scheduling.plugins.session_affinity import SessionAffinityParams, SessionAffinityScorer
from inferpool.scheduling.plugins.stored_response import StoredResponseFilter, StoredResponseParams
from inferpool.scheduling.plugins.token_load import TokenLoadScorer
from inferpool.scheduling.plugins.weighted_random import WeightedRandomPicker

# Filters, scorers and pickers go in profiles; a profile handler chooses which profiles run
# (P/D disaggregation, scheduling/disagg.py) and asks a decider; a producer holds settings
# other plugins take (llm-d's approx-prefix-cache-producer).
PluginKind = Literal["filter", "scorer", "picker", "decider", "profile-handler", "producer"]
PROFILE_KINDS: frozenset[PluginKind] = frozenset({"filter", "scorer", "picker"})


@dataclass(frozen=True)
class PluginType:
    kind: PluginKind
    params: type[Params]
    build: Callable[[str, Any], object]  # (instance name, validated params) -> plugin


def _simple(kind: PluginKind, cls: Callable[..., object]) -> PluginType:
    return PluginType(kind, NoParams, lambda name, _params: cls(name=name))


def _with_params(kind: PluginKind, params: type[Params], cls: Callable[..., object]) -> PluginType:
    return PluginType(kind, params, lambda name, p: cls(params=p, name=name))


REGISTRY: Mapping[str, PluginType] = MappingProxyType(
    {
        # scorers
        "queue-scorer": _simple("scorer", QueueScorer),
        "kv-cache-utilization-scorer": _simple("scorer", KVCacheUtilizationScorer),
        "running-requests-scorer": _simple("scorer", RunningRequestsScorer),
        "token-load-scorer": _simple("scorer", TokenLoadScorer),
        "lora-affinity-scorer": _simple("scorer", LoraAffinityScorer),
        "least-request-scorer": _simple("scorer", LeastRequestScorer),
        "prefix-cache-scorer": _with_params("scorer", PrefixCacheParams, PrefixCacheScorer),
        "precise-prefix-cache-scorer": _with_params("scorer", PrecisePrefixParams, PrecisePrefixCacheScorer),
        "predicted-latency-scorer": _with_params("scorer", PredictedLatencyParams, PredictedLatencyScorer),
        "session-affinity-scorer": _with_params("scorer", SessionAffinityParams, SessionAffinityScorer),
        # pickers
        "max-score-picker": _simple("picker", MaxScorePicker),
        "weighted-random-picker": _simple("picker", WeightedRandomPicker),
        "random-picker": _simple("picker", RandomPicker),
        "round-robin-picker": _simple("picker", RoundRobinPicker),
        # filters
        "adapter-loaded-filter": _simple("filter", AdapterLoadedFilter),
        "low-queue-filter": _with_params("filter", QueueThresholdParams, LowQueueFilter),
        "least-queue-filter": _simple("filter", LeastQueueFilter),
        "least-kv-cache-filter": _simple("filter", LeastKVCacheFilter),
        "lora-affinity-filter": _with_params("filter", LoraAffinityFilterParams, LoraAffinityFilter),
        "legacy-v0.3-filter": _with_params("filter", LegacyV03Params, LegacyV03Filter),
        "prefill-filter": _simple("filter", PrefillFilter),
        "decode-filter": _simple("filter", DecodeFilter),
        "stored-response-filter": _with_params("filter", StoredResponseParams, StoredResponseFilter),
        # P/D deciders
        "prefix-based-pd-decider": _with_params("decider", PrefixBasedPDDeciderParams, PrefixBasedPDDecider),
        "always-disagg-pd-decider": _simple("decider", AlwaysDisaggPDDecider),
        "approx-prefix-cache-producer": PluginType("producer", ApproxPrefixProducerParams, lambda _n, p: p),
        # profile handlers (their parameters are the plugin: config.py resolves the names)
        "disagg-profile-handler": PluginType("profile-handler", DisaggProfileHandlerParams, lambda _n, p: p),
        "pd-profile-handler": PluginType("profile-handler", PdProfileHandlerParams, lambda _n, p: p),
    }
)

__all__ = ["PROFILE_KINDS", "REGISTRY", "PluginKind", "PluginType"]
