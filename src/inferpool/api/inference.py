"""Inference Extension resources: InferencePool (v1alpha2 and v1), InferenceModel,
InferenceObjective and InferenceModelRewrite, with the upstream CRD validation rules.

InferenceObjective and InferenceModelRewrite left the Inference Extension for llm-d-router,
which serves them as `llm-d.ai/v1alpha2`; the old `inference.networking.x-k8s.io/v1alpha2`
is still accepted. Both apiVersions share one model per kind, so they are validated alike.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from inferpool import labels
from inferpool.api.common import (
    Group,
    Kind,
    LabelKey,
    Labels,
    LabelValue,
    Model,
    ObjectName,
    PortNumber,
    Resource,
)

X_GROUP = "inference.networking.x-k8s.io"
V1_GROUP = "inference.networking.k8s.io"
V1ALPHA2 = f"{X_GROUP}/v1alpha2"
V1 = f"{V1_GROUP}/v1"
LLMD_GROUP = "llm-d.ai"
LLMD_V1ALPHA2 = f"{LLMD_GROUP}/v1alpha2"

# The apiVersions InferenceObjective and InferenceModelRewrite are read in: llm-d-router's
# group first (where they live now), then the Inference Extension's former one.
ObjectiveApiVersion = Literal["llm-d.ai/v1alpha2", "inference.networking.x-k8s.io/v1alpha2"]

FailureMode = Literal["FailOpen", "FailClose"]
Criticality = Literal["Critical", "Standard", "Sheddable"]
Weight = Annotated[int, Field(ge=1, le=1_000_000)]


def _weights_all_or_none(items: list[_Weighted]) -> None:
    with_weight = sum(1 for item in items if item.weight is not None)
    if 0 < with_weight < len(items):
        raise ValueError("weights should be set for all models, or none of the models")


class _Weighted(Model):
    weight: Weight | None = None


# -- InferencePool v1alpha2 ------------------------------------------------------


class Extension(Model):
    """v1alpha2 extensionRef: the endpoint-picker Service."""

    group: Group = ""
    kind: Kind = "Service"
    name: ObjectName
    port_number: PortNumber | None = None
    failure_mode: FailureMode = "FailClose"


class InferencePoolSpecV1Alpha2(Model):
    selector: Labels
    target_port_number: PortNumber
    extension_ref: Extension


class InferencePoolV1Alpha2(Resource):
    api_version: Literal["inference.networking.x-k8s.io/v1alpha2"]
    kind: Literal["InferencePool"]
    spec: InferencePoolSpecV1Alpha2


# -- InferencePool v1 ------------------------------------------------------------


class LabelSelector(Model):
    match_labels: Annotated[Labels, Field(min_length=1, max_length=64)]


class Port(Model):
    number: PortNumber


class EndpointPickerPort(Model):
    number: PortNumber


class EndpointPickerRef(Model):
    group: Group = ""
    kind: Kind = "Service"
    name: ObjectName
    port: EndpointPickerPort | None = None
    failure_mode: FailureMode = "FailClose"

    @model_validator(mode="after")
    def _port_for_service(self) -> EndpointPickerRef:
        if self.kind == "Service" and self.port is None:
            raise ValueError("port is required when kind is 'Service' or unspecified (defaults to 'Service')")
        return self


class InferencePoolSpecV1(Model):
    selector: LabelSelector
    target_ports: Annotated[list[Port], Field(min_length=1, max_length=8)]
    endpoint_picker_ref: EndpointPickerRef
    app_protocol: Literal["http", "kubernetes.io/h2c"] | None = None

    @field_validator("target_ports")
    @classmethod
    def _unique_ports(cls, ports: list[Port]) -> list[Port]:
        numbers = [p.number for p in ports]
        if len(set(numbers)) != len(numbers):
            raise ValueError("port numbers must be unique")
        return ports


class InferencePoolV1(Resource):
    api_version: Literal["inference.networking.k8s.io/v1"]
    kind: Literal["InferencePool"]
    spec: InferencePoolSpecV1


InferencePool = InferencePoolV1Alpha2 | InferencePoolV1


def pool_selector(pool: InferencePool) -> dict[str, str]:
    if isinstance(pool, InferencePoolV1):
        return dict(pool.spec.selector.match_labels)
    return dict(pool.spec.selector)


def pool_ports(pool: InferencePool) -> list[int]:
    if isinstance(pool, InferencePoolV1):
        return [p.number for p in pool.spec.target_ports]
    return [pool.spec.target_port_number]


# -- InferenceModel (v1alpha2) ---------------------------------------------------


class PoolRef(Model):
    group: Group = X_GROUP
    kind: Kind = "InferencePool"
    name: ObjectName


class TargetModel(_Weighted):
    name: Annotated[str, Field(min_length=1, max_length=253)]


class InferenceModelSpec(Model):
    model_name: Annotated[str, Field(min_length=1, max_length=256)]
    criticality: Criticality | None = None
    target_models: Annotated[list[TargetModel], Field(max_length=10)] = Field(default_factory=list)
    pool_ref: PoolRef

    @field_validator("target_models")
    @classmethod
    def _weights(cls, targets: list[TargetModel]) -> list[TargetModel]:
        _weights_all_or_none(list(targets))
        return targets


class InferenceModel(Resource):
    api_version: Literal["inference.networking.x-k8s.io/v1alpha2"]
    kind: Literal["InferenceModel"]
    spec: InferenceModelSpec


# -- pool binding of InferenceObjective and InferenceModelRewrite --------------------


class PoolObjectReference(Model):
    """llm-d-router's PoolObjectReference: the group defaults to the v1 InferencePool's."""

    group: Group = V1_GROUP
    kind: Kind = "InferencePool"
    name: ObjectName


class LabelSelectorRequirement(Model):
    key: LabelKey
    operator: labels.Operator
    values: list[LabelValue] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        # apimachinery's LabelSelectorAsSelector rejects these, so the selector could never match.
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"values must be non-empty when operator is {self.operator}")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"values must be empty when operator is {self.operator}")
        return self


class PoolLabelSelector(Model):
    """A full metav1.LabelSelector over InferencePool labels; an empty one selects every pool."""

    match_labels: Labels = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    def selector(self) -> labels.LabelSelector:
        return labels.LabelSelector(
            dict(self.match_labels),
            tuple(labels.Requirement(r.key, r.operator, frozenset(r.values)) for r in self.match_expressions),
        )


class _PoolBound(Model):
    """poolRef, poolRefs and poolSelector: the pools (same namespace) an object applies to.

    It applies to a pool when any of them names or selects it (llm-d-router #2924/#2925).
    At least one must be set: poolRef was required before the other two existed, so an
    object with none was an error then and stays one.
    """

    pool_ref: PoolObjectReference | None = None
    pool_refs: Annotated[list[PoolObjectReference], Field(min_length=1)] | None = None
    pool_selector: PoolLabelSelector | None = None

    @model_validator(mode="after")
    def _some_pool(self) -> _PoolBound:
        if self.pool_ref is None and self.pool_refs is None and self.pool_selector is None:
            raise ValueError("one of poolRef, poolRefs or poolSelector is required")
        return self

    def pool_names(self) -> list[str]:
        """The pools named by poolRef and poolRefs, in order, without repeats."""
        refs = ([self.pool_ref] if self.pool_ref else []) + (self.pool_refs or [])
        return list(dict.fromkeys(ref.name for ref in refs))


# -- InferenceObjective ----------------------------------------------------------


class InferenceObjectiveSpec(_PoolBound):
    priority: Annotated[int, Field(ge=-(2**31), le=2**31 - 1)] | None = None  # format: int32


class InferenceObjective(Resource):
    api_version: ObjectiveApiVersion
    kind: Literal["InferenceObjective"]
    spec: InferenceObjectiveSpec


# -- InferenceModelRewrite -------------------------------------------------------


class ModelMatch(Model):
    type: Literal["Exact"] = "Exact"
    value: Annotated[str, Field(min_length=1)]


class Match(Model):
    model: ModelMatch


class RewriteTarget(_Weighted):
    # The CRD sets no minLength; an empty name could never be served, so it is refused here.
    model_rewrite: Annotated[str, Field(min_length=1)]


class RewriteRule(Model):
    matches: list[Match] = Field(default_factory=list)
    targets: Annotated[list[RewriteTarget], Field(min_length=1)] | None = None  # optional, minItems 1

    @field_validator("targets")
    @classmethod
    def _weights(cls, targets: list[RewriteTarget] | None) -> list[RewriteTarget] | None:
        _weights_all_or_none(list(targets or []))
        return targets


class InferenceModelRewriteSpec(_PoolBound):
    rules: list[RewriteRule]  # required; an empty list is valid (the CRD sets no minItems)


class InferenceModelRewrite(Resource):
    api_version: ObjectiveApiVersion
    kind: Literal["InferenceModelRewrite"]
    spec: InferenceModelRewriteSpec
