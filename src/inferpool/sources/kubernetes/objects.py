"""Kubernetes API objects (JSON dicts) → inferpool state, through `inferpool.api`'s models.

Validation is the resource models' (the same rules `inferpool validate` applies); an object
they reject is skipped with a warning rather than taking down the whole pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from inferpool.api.gateway import HTTPRoute
from inferpool.api.guard import GuardPolicy
from inferpool.api.inference import (
    InferenceModel,
    InferenceModelRewrite,
    InferenceObjective,
    InferencePoolV1,
    InferencePoolV1Alpha2,
)
from inferpool.sources.convert import to_model, to_objective, to_pool, to_rewrite
from inferpool.sources.ranks import active_ranks, rank_endpoint_name
from inferpool.state import Endpoint, ModelRewrite, ModelRoute, Objective, Pool

log = logging.getLogger(__name__)

Object = dict[str, Any]
T = TypeVar("T")


def _as_is(value: T) -> T:
    return value


V1_GROUP = "inference.networking.k8s.io"
X_GROUP = "inference.networking.x-k8s.io"


def _describe(obj: Object) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')} {meta.get('namespace', '?')}/{meta.get('name', '?')}"


def _parsed(
    model: type[BaseModel], obj: Object, convert: Callable[[Any], T] = _as_is, level: int = logging.WARNING
) -> T | None:
    """`obj` validated by `model` (`inferpool validate`'s rules) and converted; one it rejects is
    skipped, logged at `level`, rather than taking down the whole pool."""
    try:
        return convert(model.model_validate(obj))
    except ValidationError as err:
        log.log(level, "%s rejected: %s", _describe(obj), err)
        return None


def parse_pool(obj: Object) -> Pool | None:
    model: type[InferencePoolV1] | type[InferencePoolV1Alpha2] = (
        InferencePoolV1 if obj.get("apiVersion") == f"{V1_GROUP}/v1" else InferencePoolV1Alpha2
    )
    return _parsed(model, obj, to_pool)


def parse_model(obj: Object) -> ModelRoute | None:
    return _parsed(InferenceModel, obj, to_model)


def parse_route(obj: Object) -> HTTPRoute | None:
    """An HTTPRoute, for where GuardPolicies on routes and Gateways reach (not for routing: Envoy
    routes); one the models reject is skipped quietly, as it concerns the gateway, not this EPP."""
    return _parsed(HTTPRoute, obj, level=logging.DEBUG)


def parse_guard_policy(obj: Object) -> GuardPolicy | None:
    return _parsed(GuardPolicy, obj)


def parse_objective(obj: Object) -> Objective | None:
    return _parsed(InferenceObjective, obj, to_objective)


def parse_rewrite(obj: Object) -> ModelRewrite | None:
    return _parsed(InferenceModelRewrite, obj, to_rewrite)


def pod_ready(pod: Object) -> bool:
    """Serving traffic: running, has an IP, Ready condition true, not being deleted."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") != "Running" or not status.get("podIP"):
        return False
    conditions = status.get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_endpoints(pod: Object, pool: Pool) -> list[Endpoint]:
    """One endpoint per active target port of a ready pod the pool selects (llm-d's `<pod>-rank-<i>`
    names when the pool has several; see sources/ranks.py)."""
    meta = pod.get("metadata") or {}
    labels: dict[str, str] = dict(meta.get("labels") or {})
    if not pod_ready(pod) or not pool.selects(labels):
        return []
    name = str(meta["name"])
    address = str(pod["status"]["podIP"])
    annotations = meta.get("annotations") or {}
    several = len(pool.target_ports) > 1
    return [
        Endpoint(
            name=rank_endpoint_name(name, rank) if several else name,
            address=address,
            port=port,
            pool=pool.key,
            labels=labels,
        )
        for rank, port in active_ranks(pool.target_ports, annotations)
    ]


def label_selector(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
