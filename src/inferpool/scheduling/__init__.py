"""Endpoint picking: a plugin framework (filters, scorers, pickers, profiles) and its plugins.

scheduler = load_scheduler("default")            # or a built-in name, or an EndpointPickerConfig path
result = scheduler.schedule(request, pool_endpoints)
scheduler.on_routed(request, result.ranked[0].endpoint)
"""

from inferpool.scheduling.config import (
    BUILTIN_PROFILES,
    ConfigError,
    EndpointPickerConfig,
    SchedulerSpec,
    build_scheduler,
    load_scheduler,
    parse_config,
)
from inferpool.scheduling.framework import (
    Filter,
    Picker,
    Profile,
    Scheduler,
    Scorer,
    ShedRequest,
    WeightedScorer,
)
from inferpool.scheduling.types import SchedulingRequest, SchedulingResult, ScoredEndpoint

__all__ = [
    "BUILTIN_PROFILES",
    "ConfigError",
    "EndpointPickerConfig",
    "Filter",
    "Picker",
    "Profile",
    "Scheduler",
    "SchedulerSpec",
    "SchedulingRequest",
    "SchedulingResult",
    "ScoredEndpoint",
    "Scorer",
    "ShedRequest",
    "WeightedScorer",
    "build_scheduler",
    "load_scheduler",
    "parse_config",
]
