"""Gateway API resources the built-in data plane serves: Gateway listeners and HTTPRoutes.

Only the fields inferpool acts on are typed; other Gateway API fields are accepted and
kept, so a manifest written for a real Gateway implementation still loads.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from inferpool.api.common import (
    DNSSubdomain,
    Group,
    Kind,
    LooseModel,
    Namespace,
    ObjectName,
    PortNumber,
    Resource,
)
from inferpool.durations import parse_gateway_duration

GATEWAY_GROUP = "gateway.networking.k8s.io"

_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")


def _hostname(value: str) -> str:
    if len(value) > 253 or not _HOSTNAME.match(value):
        raise ValueError(f"hostname {value!r} is invalid (a DNS name, optionally starting with '*.')")
    return value


def _header_name(value: str) -> str:
    if not 1 <= len(value) <= 256 or not _HEADER_NAME.match(value):
        raise ValueError(f"header name {value!r} is invalid")
    return value


def _duration(value: str) -> str:
    parse_gateway_duration(value)
    return value


Hostname = Annotated[str, AfterValidator(_hostname)]
HeaderName = Annotated[str, AfterValidator(_header_name)]
Duration = Annotated[str, AfterValidator(_duration)]
SectionName = DNSSubdomain


# -- Gateway ---------------------------------------------------------------------


class SecretRef(LooseModel):
    group: Group = ""
    kind: Kind = "Secret"
    name: ObjectName
    namespace: Namespace | None = None


class ListenerTLS(LooseModel):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: Annotated[list[SecretRef], Field(max_length=64)] = Field(default_factory=list)


class Listener(LooseModel):
    name: SectionName
    hostname: Hostname | None = None
    port: PortNumber
    protocol: Literal["HTTP", "HTTPS"]
    tls: ListenerTLS | None = None

    @model_validator(mode="after")
    def _tls_matches_protocol(self) -> Listener:
        if self.protocol == "HTTP" and self.tls is not None:
            raise ValueError("tls must not be specified for protocol HTTP")
        if self.protocol == "HTTPS":
            if self.tls is None or not self.tls.certificate_refs:
                raise ValueError("tls.certificateRefs must be specified for protocol HTTPS (mode Terminate)")
            if self.tls.mode == "Passthrough":
                raise ValueError("tls mode Passthrough is not allowed for protocol HTTPS")
        return self


class GatewaySpec(LooseModel):
    gateway_class_name: ObjectName
    listeners: Annotated[list[Listener], Field(min_length=1, max_length=64)]

    @field_validator("listeners")
    @classmethod
    def _unique(cls, listeners: list[Listener]) -> list[Listener]:
        names = [item.name for item in listeners]
        if len(set(names)) != len(names):
            raise ValueError("listener name must be unique within the Gateway")
        combos = [(item.port, item.protocol, item.hostname) for item in listeners]
        if len(set(combos)) != len(combos):
            raise ValueError("combination of port, protocol and hostname must be unique for each listener")
        return listeners


class Gateway(Resource):
    api_version: Literal["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"]
    kind: Literal["Gateway"]
    spec: GatewaySpec


# -- HTTPRoute -------------------------------------------------------------------


class ParentRef(LooseModel):
    group: Group = GATEWAY_GROUP
    kind: Kind = "Gateway"
    namespace: Namespace | None = None
    name: ObjectName
    section_name: SectionName | None = None
    port: PortNumber | None = None


def _check_regex(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc


class PathMatch(LooseModel):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: Annotated[str, Field(max_length=1024)] = "/"

    @model_validator(mode="after")
    def _absolute(self) -> PathMatch:
        if self.type == "RegularExpression":
            _check_regex(self.value)
            return self
        if not self.value.startswith("/"):
            raise ValueError(
                "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']"
            )
        for bad in ("//", "/./", "/../", "%2f", "%2F", "#"):
            if bad in self.value:
                raise ValueError(f"must not contain {bad!r} when type one of ['Exact', 'PathPrefix']")
        if self.value.endswith(("/..", "/.")):
            raise ValueError("must not end with '/..' or '/.' when type one of ['Exact', 'PathPrefix']")
        return self


class HeaderMatch(LooseModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: Annotated[str, Field(min_length=1, max_length=4096)]

    @model_validator(mode="after")
    def _regex(self) -> HeaderMatch:
        if self.type == "RegularExpression":
            _check_regex(self.value)
        return self


class QueryParamMatch(HeaderMatch):
    value: Annotated[str, Field(min_length=1, max_length=1024)]


Method = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


def _unique_names(items: list[HeaderMatch], what: str) -> None:
    names = [item.name.lower() for item in items]
    if len(set(names)) != len(names):
        raise ValueError(f"{what} names must be unique (case-insensitive)")


class RouteMatch(LooseModel):
    path: PathMatch | None = Field(default_factory=PathMatch)
    headers: Annotated[list[HeaderMatch], Field(max_length=16)] = Field(default_factory=list)
    query_params: Annotated[list[QueryParamMatch], Field(max_length=16)] = Field(default_factory=list)
    method: Method | None = None

    @field_validator("headers")
    @classmethod
    def _unique_headers(cls, headers: list[HeaderMatch]) -> list[HeaderMatch]:
        _unique_names(headers, "header")
        return headers

    @field_validator("query_params")
    @classmethod
    def _unique_params(cls, params: list[QueryParamMatch]) -> list[QueryParamMatch]:
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise ValueError("query param names must be unique")
        return params


class HeaderValue(LooseModel):
    name: HeaderName
    value: Annotated[str, Field(min_length=1, max_length=4096)]


class HeaderModifier(LooseModel):
    set: Annotated[list[HeaderValue], Field(max_length=16)] = Field(default_factory=list)
    add: Annotated[list[HeaderValue], Field(max_length=16)] = Field(default_factory=list)
    remove: Annotated[list[HeaderName], Field(max_length=16)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> HeaderModifier:
        for what, names in (
            ("set", [h.name.lower() for h in self.set]),
            ("add", [h.name.lower() for h in self.add]),
            ("remove", [n.lower() for n in self.remove]),
        ):
            if len(set(names)) != len(names):
                raise ValueError(f"header names in {what} must be unique (case-insensitive)")
        return self


FilterType = Literal[
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "RequestRedirect",
    "URLRewrite",
    "ExtensionRef",
    "CORS",
]
_FILTER_FIELD = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "ExtensionRef": "extensionRef",
    "CORS": "cors",
}


class RouteFilter(LooseModel):
    """One filter; only RequestHeaderModifier and ResponseHeaderModifier are typed (the others pass through)."""

    type: FilterType
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None

    @model_validator(mode="after")
    def _config_matches_type(self) -> RouteFilter:
        present = {key for key in (self.model_extra or {}) if key in _FILTER_FIELD.values()}
        if self.request_header_modifier is not None:
            present.add("requestHeaderModifier")
        if self.response_header_modifier is not None:
            present.add("responseHeaderModifier")
        wanted = _FILTER_FIELD[self.type]
        if wanted not in present:
            raise ValueError(f"{wanted} must be specified for {self.type} filter type")
        for other in sorted(present - {wanted}):
            raise ValueError(f"{other} must be nil if the filter type is not {_type_of(other)}")
        return self


def _type_of(field: str) -> str:
    return next(kind for kind, name in _FILTER_FIELD.items() if name == field)


class BackendRef(LooseModel):
    group: Group = ""
    kind: Kind = "Service"
    name: ObjectName
    namespace: Namespace | None = None
    port: PortNumber | None = None
    weight: Annotated[int, Field(ge=0, le=1_000_000)] = 1
    filters: Annotated[list[RouteFilter], Field(max_length=16)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _service_port(self) -> BackendRef:
        if self.group == "" and self.kind == "Service" and self.port is None:
            raise ValueError("port is required for a Service reference")
        return self

    @property
    def is_inference_pool(self) -> bool:
        return self.kind == "InferencePool" and self.group in (
            "inference.networking.x-k8s.io",
            "inference.networking.k8s.io",
        )


class RouteTimeouts(LooseModel):
    request: Duration | None = None
    backend_request: Duration | None = None

    @model_validator(mode="after")
    def _backend_within_request(self) -> RouteTimeouts:
        if self.request is None or self.backend_request is None:
            return self
        request, backend = parse_gateway_duration(self.request), parse_gateway_duration(self.backend_request)
        if request != 0 and backend > request:
            raise ValueError("backendRequest timeout cannot be longer than request timeout")
        return self

    @property
    def request_s(self) -> float | None:
        """None: no limit (unset or "0s", which Gateway API defines as disabled)."""
        value = parse_gateway_duration(self.request) if self.request else 0.0
        return value or None

    @property
    def backend_request_s(self) -> float | None:
        value = parse_gateway_duration(self.backend_request) if self.backend_request else 0.0
        return value or None


def _default_matches() -> list[RouteMatch]:
    return [RouteMatch()]


class RouteRule(LooseModel):
    name: SectionName | None = None
    matches: Annotated[list[RouteMatch], Field(max_length=64)] = Field(default_factory=_default_matches)
    filters: Annotated[list[RouteFilter], Field(max_length=16)] = Field(default_factory=list)
    backend_refs: Annotated[list[BackendRef], Field(max_length=16)] = Field(default_factory=list)
    timeouts: RouteTimeouts | None = None

    @field_validator("filters")
    @classmethod
    def _single_modifiers(cls, filters: list[RouteFilter]) -> list[RouteFilter]:
        for kind in ("RequestHeaderModifier", "ResponseHeaderModifier", "URLRewrite", "RequestRedirect"):
            if sum(1 for f in filters if f.type == kind) > 1:
                raise ValueError(f"{kind} filter cannot be repeated")
        return filters


def _default_rules() -> list[RouteRule]:
    return [RouteRule()]


class HTTPRouteSpec(LooseModel):
    parent_refs: Annotated[list[ParentRef], Field(max_length=32)] = Field(default_factory=list)
    hostnames: Annotated[list[Hostname], Field(max_length=16)] = Field(default_factory=list)
    rules: Annotated[list[RouteRule], Field(max_length=16)] = Field(default_factory=_default_rules)


class HTTPRoute(Resource):
    api_version: Literal["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"]
    kind: Literal["HTTPRoute"]
    spec: HTTPRouteSpec
