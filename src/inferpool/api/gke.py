"""GKE's HealthCheckPolicy: the probe the load balancer (here: inferpool) runs against a pool's pods."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from inferpool.api.common import Group, Kind, LooseModel, ObjectName, PortNumber, Resource


class TargetRef(LooseModel):
    group: Group = ""
    kind: Kind
    name: ObjectName


class HTTPHealthCheck(LooseModel):
    request_path: Annotated[str, Field(pattern=r"^/", max_length=2048)] = "/"
    port: PortNumber | None = None
    host: str | None = None


class HealthCheckConfig(LooseModel):
    type: Literal["HTTP", "HTTPS", "HTTP2", "TCP", "GRPC"]
    http_health_check: HTTPHealthCheck | None = None
    https_health_check: HTTPHealthCheck | None = None
    http2_health_check: HTTPHealthCheck | None = None


class HealthCheckDefault(LooseModel):
    check_interval_sec: Annotated[int, Field(ge=1, le=300)] | None = None
    timeout_sec: Annotated[int, Field(ge=1, le=300)] | None = None
    healthy_threshold: Annotated[int, Field(ge=1, le=10)] | None = None
    unhealthy_threshold: Annotated[int, Field(ge=1, le=10)] | None = None
    config: HealthCheckConfig | None = None


class HealthCheckPolicySpec(LooseModel):
    target_ref: TargetRef
    default: HealthCheckDefault = Field(default_factory=HealthCheckDefault)


class HealthCheckPolicy(Resource):
    api_version: Literal["networking.gke.io/v1"]
    kind: Literal["HealthCheckPolicy"]
    spec: HealthCheckPolicySpec

    def http_check(self) -> HTTPHealthCheck | None:
        """The HTTP(S) probe settings, whichever of the three HTTP config blocks is used."""
        config = self.spec.default.config
        if config is None:
            return None
        return config.http_health_check or config.https_health_check or config.http2_health_check
