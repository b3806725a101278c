"""ManifestSet -> `inferpool.state` objects: the one place that knows both API versions.

The core (scheduling, admission, the data planes) only ever sees `Pool`, `ModelRoute`,
`Objective` and `ModelRewrite`, so a new API version changes this file and nothing else.
It lives in sources/, the layer that feeds the datastore, because api/ sits below state/.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from inferpool.api.gke import HealthCheckPolicy
from inferpool.api.inference import (
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


def to_objective(objective: InferenceObjective) -> Objective:
    return Objective(
        namespace=objective.namespace,
        name=objective.name,
        pool_name=objective.spec.pool_ref.name,
        priority=objective.spec.priority or 0,  # unset means 0, as upstream
    )


def to_rewrite(rewrite: InferenceModelRewrite) -> ModelRewrite:
    return ModelRewrite(
        namespace=rewrite.namespace,
        name=rewrite.name,
        pool_name=rewrite.spec.pool_ref.name,
        rules=[
            RewriteRule(
                models=[match.model.value for match in rule.matches],
                targets=[RewriteTarget(model=t.model_rewrite, weight=t.weight) for t in rule.targets],
            )
            for rule in rewrite.spec.rules
        ],
    )


def to_state(manifests: ManifestSet) -> StateObjects:
    """The routing objects of a loaded manifest set, in file order."""
    return StateObjects(
        pools=[to_pool(p, _policy_for(p, manifests.health_check_policies)) for p in manifests.pools],
        models=[to_model(m) for m in manifests.models],
        objectives=[to_objective(o) for o in manifests.objectives],
        rewrites=[to_rewrite(r) for r in manifests.rewrites],
    )
