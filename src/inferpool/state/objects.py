"""Normalized routing objects the core works on.

Two InferencePool API versions, InferenceModel, InferenceObjective and
InferenceModelRewrite all reduce to these; `api/` does the conversion so the core
never branches on API versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from inferpool.labels import LabelSelector


class Criticality(StrEnum):
    CRITICAL = "Critical"
    STANDARD = "Standard"
    SHEDDABLE = "Sheddable"


# v1alpha2 criticality expressed as a v1 InferenceObjective priority, so admission
# has one rule: priority < 0 is sheddable, higher priority wins.
_CRITICALITY_PRIORITY = {
    Criticality.CRITICAL: 1,
    Criticality.STANDARD: 0,
    Criticality.SHEDDABLE: -1,
}


def criticality_priority(criticality: Criticality | None) -> int:
    """Priority of a v1alpha2 criticality (unset means Standard, as upstream)."""
    return _CRITICALITY_PRIORITY[criticality or Criticality.STANDARD]


def pool_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@dataclass(frozen=True)
class HealthCheck:
    """An HTTP health probe (HealthCheckPolicy or the pod's readiness probe)."""

    path: str = "/health"
    port: int | None = None  # None: the endpoint's serving port
    interval_s: float = 1.0
    timeout_s: float = 1.0
    unhealthy_threshold: int = 2
    healthy_threshold: int = 1


@dataclass
class Pool:
    """An InferencePool: which pods serve one base model, on which ports."""

    namespace: str
    name: str
    selector: dict[str, str]
    target_ports: list[int]
    failure_mode: Literal["FailOpen", "FailClose"] = "FailClose"
    endpoint_picker: str | None = None  # extensionRef / endpointPickerRef name
    health_check: HealthCheck | None = None
    api_version: str = "inference.networking.x-k8s.io/v1alpha2"
    labels: dict[str, str] = field(default_factory=dict)  # the pool's own metadata.labels (poolSelector)

    @property
    def key(self) -> str:
        return pool_key(self.namespace, self.name)

    def selects(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.selector.items())


@dataclass(frozen=True)
class TargetModel:
    name: str
    weight: int | None = None


@dataclass(frozen=True)
class ModelRoute:
    """A v1alpha2 InferenceModel: a public model name served by a pool. Frozen: the datastore
    indexes routes by pool and model name (a changed route is upserted whole)."""

    namespace: str
    name: str  # the resource's name
    model_name: str  # what clients put in the body's "model"
    pool_name: str
    criticality: Criticality | None = None
    targets: list[TargetModel] = field(default_factory=list)

    @property
    def pool_key(self) -> str:
        return pool_key(self.namespace, self.pool_name)


@dataclass(frozen=True)
class PoolBinding:
    """The pools an objective or rewrite applies to: named ones, plus those a selector picks.

    Resolved when asked, against the pools known then, so a pool that appears (or gains
    the selected labels) later is bound without touching the objective.
    """

    names: tuple[str, ...] = ()
    selector: LabelSelector | None = None

    def binds(self, pool: Pool) -> bool:
        return pool.name in self.names or (self.selector is not None and self.selector.matches(pool.labels))


@dataclass
class Objective:
    """An InferenceObjective: a named priority, chosen by request header."""

    namespace: str
    name: str
    binding: PoolBinding
    priority: int = 0

    def applies_to(self, pool: Pool) -> bool:
        return pool.namespace == self.namespace and self.binding.binds(pool)


@dataclass(frozen=True)
class RewriteTarget:
    model: str
    weight: int | None = None


@dataclass
class RewriteRule:
    models: list[str]  # incoming model names this rule matches; empty matches any
    targets: list[RewriteTarget]


@dataclass
class ModelRewrite:
    """An InferenceModelRewrite: weighted model-name rewrites for the pools it binds."""

    namespace: str
    name: str
    binding: PoolBinding
    rules: list[RewriteRule] = field(default_factory=list)

    def applies_to(self, pool: Pool) -> bool:
        return pool.namespace == self.namespace and self.binding.binds(pool)
