"""Shared building blocks of the resource models: Kubernetes name and label rules.

The patterns are the ones the upstream CRDs and Kubernetes apimachinery enforce, so a
manifest that `kubectl apply` would reject is rejected here with the same reason.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr
from pydantic.alias_generators import to_camel

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
GROUP = re.compile(r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
KIND = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
)
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _check(pattern: re.Pattern[str], what: str, max_len: int, min_len: int = 1) -> AfterValidator:
    def check(value: str) -> str:
        if len(value) < min_len:
            raise ValueError(f"{what} must not be empty")
        if len(value) > max_len:
            raise ValueError(f"{what} {value!r} is longer than {max_len} characters")
        if not pattern.match(value):
            raise ValueError(f"{what} {value!r} is invalid")
        return value

    return AfterValidator(check)


def _check_label_key(value: str) -> str:
    if not value or len(value) > 253 or not LABEL_KEY.match(value):
        raise ValueError(f"label key {value!r} is not a valid qualified name")
    name = value.rsplit("/", 1)[-1]
    if len(name) > 63:
        raise ValueError(f"label key {value!r}: name part is longer than 63 characters")
    return value


DNSLabel = Annotated[str, _check(DNS_LABEL, "name", 63)]
DNSSubdomain = Annotated[str, _check(DNS_SUBDOMAIN, "name", 253)]
Namespace = Annotated[str, _check(DNS_LABEL, "namespace", 63)]
Group = Annotated[str, _check(GROUP, "group", 253, min_len=0)]
Kind = Annotated[str, _check(KIND, "kind", 63)]
ObjectName = Annotated[str, Field(min_length=1, max_length=253)]
PortNumber = Annotated[int, Field(ge=1, le=65535)]
LabelKey = Annotated[str, AfterValidator(_check_label_key)]
LabelValue = Annotated[str, _check(LABEL_VALUE, "label value", 63, min_len=0)]
Labels = dict[LabelKey, LabelValue]


class Model(BaseModel):
    """Base of every spec type: camelCase field names, unknown fields rejected (kubectl --validate=strict)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True)


class LooseModel(BaseModel):
    """For resources we read only partly (Gateway API, GKE policies): unknown fields are kept, not errors."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", strict=True)


class ObjectMeta(LooseModel):
    name: DNSSubdomain
    namespace: Namespace = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Origin(BaseModel):
    """Where a resource was read from, for messages."""

    file: str
    line: int


class Resource(LooseModel):
    """A top-level Kubernetes object; subclasses narrow apiVersion, kind and spec."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    _origin: Origin | None = PrivateAttr(default=None)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def origin(self) -> Origin | None:
        return self._origin

    def at(self, file: str, line: int) -> Any:
        self._origin = Origin(file=file, line=line)
        return self
