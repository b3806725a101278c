"""ManifestSet -> `inferpool.state` objects: the one place that knows both API versions.

The core (scheduling, admission, the data planes) only ever sees `Pool`, `ModelRoute`,
`Objective` and `ModelRewrite`, so a new API version changes this file and nothing else.
It lives in sources/, the layer that feeds the datastore, because api/ sits below state/.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TypeVar

from inferpool.api.gke import HealthCheckPolicy
from inferpool.api.inference import (
    LLMD_GROUP,
    InferenceModel,
    InferenceModelRewrite,
    InferenceObjective,
    InferencePool,
    InferencePoolV1,
    pool_ports,
    pool_selector,
)
from inferpool.api.loader import ManifestSet
from inferpool.state import (
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
)


@dataclass
class StateObjects:
    """What a manifest set contributes to the Datastore."""

    pools: list[Pool] = field(default_factory=list)
    models: list[ModelRoute] = field(default_factory=list)
    objectives: list[Objective] = field(default_factory=list)
    rewrites: list[ModelRewrite] = field(default_factory=list)


def health_check(policy: HealthCheckPolicy) -> HealthCheck | None:
    """A HealthCheckPolicy as a probe; None for TCP/gRPC checks, which inferpool does not run.

    Unset timings keep `HealthCheck`'s defaults (1 s): tighter than GKE's 5 s because
    a local pool is small and a quick reaction is what a single-machine run wants.
    """
    config = policy.spec.default.config
    if config is not None and config.type not in ("HTTP", "HTTPS", "HTTP2"):
        return None
    defaults = HealthCheck()
    http = policy.http_check()
    settings = policy.spec.default
    return HealthCheck(
        path=http.request_path if http else defaults.path,
        port=http.port if http else None,
        interval_s=float(settings.check_interval_sec or defaults.interval_s),
        timeout_s=float(settings.timeout_sec or defaults.timeout_s),
        unhealthy_threshold=settings.unhealthy_threshold or defaults.unhealthy_threshold,
        healthy_threshold=settings.healthy_threshold or defaults.healthy_threshold,
    )


def _policy_for(pool: InferencePool, policies: list[HealthCheckPolicy]) -> HealthCheckPolicy | None:
    for policy in policies:
        ref = policy.spec.target_ref
        if ref.kind == "InferencePool" and ref.name == pool.name and policy.namespace == pool.namespace:
            return policy
    return None


def to_pool(pool: InferencePool, policy: HealthCheckPolicy | None = None) -> Pool:
    if isinstance(pool, InferencePoolV1):
        ref = pool.spec.endpoint_picker_ref
        failure_mode, picker = ref.failure_mode, ref.name
    else:
        extension = pool.spec.extension_ref
        failure_mode, picker = extension.failure_mode, extension.name
    check = health_check(policy) if policy else None
    if check is not None and check.port in pool_ports(pool):
        # The policy names the pool's serving port: probe each endpoint on the port it
        # serves on. Same thing in Kubernetes; in local mode replicas serve on their own ports.
        check = replace(check, port=None)
    return Pool(
        namespace=pool.namespace,
        name=pool.name,
        selector=pool_selector(pool),
        target_ports=pool_ports(pool),
        failure_mode=failure_mode,
        endpoint_picker=picker,
        health_check=check,
        api_version=pool.api_version,
        labels=dict(pool.metadata.labels),
    )


def to_model(model: InferenceModel) -> ModelRoute:
    spec = model.spec
    return ModelRoute(
        namespace=model.namespace,
        name=model.name,
        model_name=spec.model_name,
        pool_name=spec.pool_ref.name,
        criticality=Criticality(spec.criticality) if spec.criticality else None,
        targets=[TargetModel(name=t.name, weight=t.weight) for t in spec.target_models],
    )


def _binding(bound: InferenceObjective | InferenceModelRewrite) -> PoolBinding:
    spec = bound.spec
    selector = spec.pool_selector.selector() if spec.pool_selector is not None else None
    return PoolBinding(names=tuple(spec.pool_names()), selector=selector)


def to_objective(objective: InferenceObjective) -> Objective:
    return Objective(
        namespace=objective.namespace,
        name=objective.name,
        binding=_binding(objective),
        priority=objective.spec.priority or 0,  # unset means 0, as upstream
    )


def to_rewrite(rewrite: InferenceModelRewrite) -> ModelRewrite:
    return ModelRewrite(
        namespace=rewrite.namespace,
        name=rewrite.name,
        binding=_binding(rewrite),
        rules=[
            RewriteRule(
                models=[match.model.value for match in rule.matches],
                targets=[RewriteTarget(model=t.model_rewrite, weight=t.weight) for t in rule.targets or []],
            )
            for rule in rewrite.spec.rules
        ],
    )


_Bound = TypeVar("_Bound", InferenceObjective, InferenceModelRewrite)


def in_llmd_group(obj: InferenceObjective | InferenceModelRewrite) -> bool:
    return obj.api_version.split("/", 1)[0] == LLMD_GROUP


def one_per_name(objects: list[_Bound]) -> list[_Bound]:
    """One object per namespace/name: where both groups define it, llm-d-router's (llm-d.ai) wins.

    Kubernetes keeps the two groups' objects apart, but requests name an objective by its
    name alone, so a migration that copies objects into the new group must not make the
    choice depend on file or watch order.
    """
    chosen: dict[tuple[str, str], _Bound] = {}
    for obj in objects:
        key = (obj.namespace, obj.name)
        if key not in chosen or (in_llmd_group(obj) and not in_llmd_group(chosen[key])):
            chosen[key] = obj
    return list(chosen.values())


def to_state(manifests: ManifestSet) -> StateObjects:
    """The routing objects of a loaded manifest set, in file order."""
    return StateObjects(
        pools=[to_pool(p, _policy_for(p, manifests.health_check_policies)) for p in manifests.pools],
        models=[to_model(m) for m in manifests.models],
        objectives=[to_objective(o) for o in one_per_name(manifests.objectives)],
        rewrites=[to_rewrite(r) for r in one_per_name(manifests.rewrites)],
    )
