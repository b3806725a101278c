"""The datastore: pools, models, endpoints and their latest metrics.

Everything above this layer (scheduling, admission, request, the data planes) reads
the world through these types; `api/` converts Kubernetes resources into them and
`sources/` + `scrape/` keep them current.
"""

from inferpool.state.datastore import ChangeEvent, Datastore
from inferpool.state.endpoint import Endpoint, EndpointMetrics
from inferpool.state.objects import (
    Criticality,
    HealthCheck,
    ModelRewrite,
    ModelRoute,
    Objective,
    Pool,
    PoolBinding,
    RewriteRule,
    RewriteTarget,
    TargetModel,
    criticality_priority,
)

__all__ = [
    "ChangeEvent",
    "Criticality",
    "Datastore",
    "Endpoint",
    "EndpointMetrics",
    "HealthCheck",
    "ModelRewrite",
    "ModelRoute",
    "Objective",
    "Pool",
    "PoolBinding",
    "RewriteRule",
    "RewriteTarget",
    "TargetModel",
    "criticality_priority",
]
