"""Inference Extension resources: InferencePool (v1alpha2 and v1), InferenceModel,
InferenceObjective and InferenceModelRewrite, with the upstream CRD validation rules."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from inferpool.api.common import (
    Group,
    Kind,
    Labels,
    Model,
    ObjectName,
    PortNumber,
    Resource,
)

X_GROUP = "inference.networking.x-k8s.io"
V1_GROUP = "inference.networking.k8s.io"
V1ALPHA2 = f"{X_GROUP}/v1alpha2"
V1 = f"{V1_GROUP}/v1"

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


# -- InferenceObjective (v1alpha2) -----------------------------------------------


class InferenceObjectiveSpec(Model):
    priority: int | None = None
    pool_ref: PoolRef


class InferenceObjective(Resource):
    api_version: Literal["inference.networking.x-k8s.io/v1alpha2"]
    kind: Literal["InferenceObjective"]
    spec: InferenceObjectiveSpec


# -- InferenceModelRewrite (v1alpha2) --------------------------------------------


class ModelMatch(Model):
    type: Literal["Exact"] = "Exact"
    value: Annotated[str, Field(min_length=1)]


class Match(Model):
    model: ModelMatch


class RewriteTarget(_Weighted):
    model_rewrite: Annotated[str, Field(min_length=1)]


class RewriteRule(Model):
    matches: list[Match] = Field(default_factory=list)
    targets: Annotated[list[RewriteTarget], Field(min_length=1)]

    @field_validator("targets")
    @classmethod
    def _weights(cls, targets: list[RewriteTarget]) -> list[RewriteTarget]:
        _weights_all_or_none(list(targets))
        return targets


class InferenceModelRewriteSpec(Model):
    pool_ref: PoolRef
    rules: Annotated[list[RewriteRule], Field(min_length=1)]


class InferenceModelRewrite(Resource):
    api_version: Literal["inference.networking.x-k8s.io/v1alpha2"]
    kind: Literal["InferenceModelRewrite"]
    spec: InferenceModelRewriteSpec
